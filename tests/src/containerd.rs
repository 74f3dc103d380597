//! Debian's containerd, started privately for a test: its own root, state, sockets and config
//! in a temporary directory, the CRI plugin off, the Warrant shim on its `PATH` and
//! `WARRANT_CONFIG` in its environment (containerd passes both to the shims it starts).
//! Stopped, and its tasks' shims with it, when dropped.
//!
//! No silent skip: containerd needs root, and a missing binary or a non-root user fails the
//! test saying what is needed (`scripts/test.sh` installs containerd and runc).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs containerd and its client.
pub const CONTAINERD_BIN: &str = "/usr/bin/containerd";
/// containerd's command-line client.
pub const CTR_BIN: &str = "/usr/bin/ctr";
/// The runtime name containerd maps to `containerd-shim-warrant-v1` on its `PATH`.
pub const RUNTIME: &str = "io.containerd.warrant.v1";
/// The containerd namespace the tests use.
pub const NAMESPACE: &str = "warrant-test";

/// A running private containerd.
pub struct TestContainerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl TestContainerd {
    /// Start containerd with `shim` (the built shim binary, under any name) installed as
    /// `containerd-shim-warrant-v1` on its `PATH`, and `warrant_config` as its
    /// `WARRANT_CONFIG`. Ready when `ctr version` answers.
    pub fn start(shim: &Path, warrant_config: &Path) -> Self {
        assert!(
            Path::new(CONTAINERD_BIN).exists() && Path::new(CTR_BIN).exists(),
            "containerd is missing: install it with `apt-get install -y containerd runc` \
             (scripts/test.sh does)"
        );
        assert!(
            rustix_is_root(),
            "containerd and its shims need root: run the suite as root (CI does)"
        );
        // Short paths: the sockets must fit in a `sun_path` (108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        std::fs::copy(shim, bin.join("containerd-shim-warrant-v1")).expect("install the shim");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\n\
                 root = \"{root}\"\n\
                 state = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n\
                 [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [debug]\n  level = \"info\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                sock = dir.path().join("c.sock").display(),
            ),
        )
        .expect("write containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let child = Command::new(CONTAINERD_BIN)
            .arg("--config")
            .arg(&config)
            .env("PATH", path)
            .env("WARRANT_CONFIG", warrant_config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let containerd = Self { child, dir };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if containerd.ctr(&["version"]).status.success() {
                return containerd;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("containerd did not start:\n{}", containerd.log());
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// containerd's root (its content store is under `io.containerd.content.v1.content`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `ctr` against this daemon, in [`NAMESPACE`], not yet run.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(CTR_BIN);
        command
            .arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(NAMESPACE)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Run `ctr` with `args` to its end.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("run ctr")
    }

    /// The blob `digest` in the content store, as containerd keeps it on disk.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root()
            .join("io.containerd.content.v1.content/blobs/sha256")
            .join(hex)
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        // Tasks first, so no shim outlives its daemon; then the daemon.
        let tasks = self.ctr(&["tasks", "list", "--quiet"]);
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A shim whose task was not deleted outlives its daemon: end any still running.
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.dir.path().join("bin/containerd-shim-warrant-v1"))
            .status();
        // Whatever the daemon mounted under its root.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(self.root())
            .stderr(Stdio::null())
            .status();
    }
}

fn rustix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
