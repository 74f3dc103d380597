//! A `warrant serve` process for the tests, and a plain HTTP/1.1 client over a TCP socket
//! (so a test controls every byte: a missing `Host`, a slow head, a body cut short).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `warrant serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// Where requests are served.
    pub addr: SocketAddr,
    /// Where the admin endpoints are served, if configured.
    pub admin: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start `command` (a `warrant serve …` command line with its environment) and wait until
    /// it says it is ready (at most `within`).
    pub fn start(mut command: Command, within: Duration) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warrant serve");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            lines,
        };
        let ready = server.wait_for("warrant: ready:", within);
        assert!(ready, "the server did not become ready:\n{}", server.log());
        server.addr = server
            .address_after("warrant: serving on http://")
            .expect("the serving address");
        server.admin = server.address_after("warrant: admin on http://");
        server
    }

    fn address_after(&self, prefix: &str) -> Option<SocketAddr> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix(prefix).and_then(|a| a.parse().ok()))
    }

    /// Wait until a line containing `needle` was printed (at most `within`).
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// How many printed lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Everything it printed.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Send `signal` (`libc::SIGHUP`, …).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // `kill(1)`: the tests crate has no `unsafe`.
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit (at most `within`): its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stop it as an operator would (SIGTERM: drained, every record committed and a checkpoint
    /// signed) and wait for it to exit 0.
    pub fn stop(mut self) {
        self.signal(15);
        let code = self.wait_exit(Duration::from_secs(30));
        assert_eq!(
            code,
            Some(0),
            "warrant serve did not stop cleanly:\n{}",
            self.log()
        );
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        request(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as read off the socket.
#[derive(Debug)]
pub struct Response {
    /// The status code (0 when none was read).
    pub status: u16,
    /// The head's lines after the status line.
    pub headers: Vec<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body ended as its framing says (the last chunk, or `Content-Length`
    /// bytes); false when the connection closed before.
    pub complete: bool,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `raw` (a whole request) to `addr` and read the response until the connection closes
/// (at most 60 s).
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    try_request(addr, raw).expect("connect")
}

/// As [`request`], or `None` when the connection is refused (a server gone).
pub fn try_request(addr: SocketAddr, raw: &str) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    if stream.write_all(raw.as_bytes()).is_err() {
        return Some(Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            complete: false,
        });
    }
    Some(read_response(&mut stream))
}

/// Read one response from `stream` until it closes.
pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            complete: false,
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<String> = lines.map(str::to_owned).collect();
    let header = |name: &str| {
        headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let (body, complete) = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let body = rest[..rest.len().min(length)].to_vec();
        let complete = body.len() == length;
        (body, complete)
    } else {
        (rest.to_vec(), true)
    };
    Response {
        status,
        headers,
        body,
        complete,
    }
}

fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (body, false);
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (body, true);
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Write `text` to `path`, making its directory.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
