//! `wasi:http` guests built by real toolchains no one here wrote, from the sources in
//! `tests/data/guests/http-*`: Python by componentize-py, JavaScript by jco and
//! componentize-js. `scripts/build-toolchain-guests.sh` installs the toolchains and builds
//! each guest once per source hash (under `target/toolchain-guests`), so a run pays once.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The built guests' paths: (Python, JavaScript).
fn built() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/build-toolchain-guests.sh"))
            .output()
            .expect("run scripts/build-toolchain-guests.sh");
        assert!(
            out.status.success(),
            "building the toolchain guests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("no `{key}` in the build's output:\n{stdout}"))
        };
        (path("python="), path("js="))
    })
}

/// The Python handler: `hello from python: <METHOD> <path>`; `/echo…` echoes the body.
pub fn python_http_guest() -> Vec<u8> {
    std::fs::read(&built().0).unwrap()
}

/// The JavaScript handler: `hello from js: <METHOD> <path>`; `/echo…` echoes the body.
pub fn js_http_guest() -> Vec<u8> {
    std::fs::read(&built().1).unwrap()
}
