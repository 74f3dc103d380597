//! Debian's `docker-registry` (the CNCF distribution registry), started on a free loopback
//! port with its own temporary config and storage, stopped when dropped.
//!
//! There is no silent skip: when the binary is missing the test fails and says how to install
//! it (`scripts/test.sh` does).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The realm of the registries [`TestRegistry::start_with_htpasswd`] starts.
pub const HTPASSWD_REALM: &str = "warrant-test";

/// bcrypt cost of the test htpasswd file: the minimum, since only the format matters here.
const HTPASSWD_BCRYPT_COST: u32 = 4;

/// A running registry.
pub struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Start a registry and wait until `GET /v2/` answers.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Start a registry that demands HTTP basic credentials: an htpasswd file (bcrypt) with the
    /// one user `username`, realm [`HTPASSWD_REALM`]. Anonymous requests get `401` with
    /// `WWW-Authenticate: Basic realm="warrant-test"`. Ready when `GET /v2/` answers `401`.
    pub fn start_with_htpasswd(username: &str, password: &str) -> Self {
        assert!(
            !username.contains(':') && !username.contains('\n'),
            "htpasswd user names cannot contain `:` or a newline"
        );
        let hash = bcrypt::hash(password, HTPASSWD_BCRYPT_COST).expect("bcrypt hash");
        Self::launch(Some(format!("{username}:{hash}\n")))
    }

    /// Start a registry, with basic auth when `htpasswd` (the file's contents) is given.
    fn launch(htpasswd: Option<String>) -> Self {
        let bin =
            std::env::var("WARRANT_TEST_REGISTRY_BIN").unwrap_or_else(|_| REGISTRY_BIN.into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "`{bin}` is missing: install it with `apt-get install -y docker-registry` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let auth = match &htpasswd {
            None => String::new(),
            Some(contents) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, contents).expect("write htpasswd");
                format!(
                    "auth: {{htpasswd: {{realm: {HTPASSWD_REALM}, path: {path}}}}}\n",
                    path = path.display()
                )
            }
        };
        // Anonymous `GET /v2/` answers 200 on an open registry, 401 on one that demands
        // credentials.
        let ready_status = if htpasswd.is_some() { 401 } else { 200 };
        // A port the OS just handed out; the tiny race with another process is acceptable in
        // tests and retried below.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log: {{level: error, accesslog: {{disabled: true}}}}\n\
                     storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}\n\
                     http: {{addr: 127.0.0.1:{port}}}\n\
                     {auth}",
                    root = dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            let mut child = child;
            if wait_ready(&mut child, port, ready_status, Duration::from_secs(15)) {
                return Self { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start; see its log");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    /// The registry's storage directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

fn wait_ready(child: &mut Child, port: u16, ready_status: u16, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http_get_status(port, "/v2/") == Some(ready_status) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A minimal blocking HTTP GET returning the status code.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(head.get(..n)?).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}
