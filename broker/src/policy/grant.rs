//! What a run may have: the operator's [`Asks`], the [`Grant`] allowed decisions make, and the
//! [`Denial`] when they do not.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use registry_client::Digest;
use serde::Serialize;

use super::load::path_text;
use super::memo::RememberedRun;
#[cfg(doc)]
use super::validation_key;
use super::{Decision, DecisionMemo, Facts, Policies, Request, decision_key};

/// A host directory held open from the moment it was asked for, so that the directory a
/// policy decides on and the one the guest is given are the same object: the guest gets this
/// handle, never a path looked up again.
///
/// INVARIANT (one object): the path a `--dir` is decided by is the canonical path of this
/// very directory, checked (device and inode) after it was opened.
#[derive(Clone)]
pub struct HostDir {
    fd: Arc<std::os::fd::OwnedFd>,
    dev: u64,
    ino: u64,
}

impl std::fmt::Debug for HostDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::fd::AsRawFd as _;
        f.debug_struct("HostDir")
            .field("fd", &self.fd.as_raw_fd())
            .field("dev", &self.dev)
            .field("ino", &self.ino)
            .finish()
    }
}

impl PartialEq for HostDir {
    fn eq(&self, other: &Self) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

impl Eq for HostDir {}

impl HostDir {
    /// Open the directory `path` names (symbolic links in it followed, as the operator wrote
    /// it), and find its canonical path: the path of the object held, checked to be so after
    /// the open. A directory swapped while this runs is refused, never decided by one path and
    /// opened by another.
    pub fn open(path: &Path) -> Result<(Self, PathBuf), String> {
        use rustix::fs::{Mode, OFlags};
        use std::os::unix::fs::MetadataExt as _;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::NOTDIR {
                format!("`{}` is not a directory", path.display())
            } else {
                format!("`{}`: {}", path.display(), std::io::Error::from(e))
            }
        })?;
        let held = rustix::fs::fstat(&fd)
            .map_err(|e| format!("`{}`: {}", path.display(), std::io::Error::from(e)))?;
        let canonical =
            std::fs::canonicalize(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
        let named =
            std::fs::metadata(&canonical).map_err(|e| format!("`{}`: {e}", canonical.display()))?;
        if (named.dev(), named.ino()) != (held.st_dev, held.st_ino) {
            return Err(format!(
                "`{}` changed while it was being opened; refused",
                path.display()
            ));
        }
        Ok((
            Self {
                fd: Arc::new(fd),
                dev: held.st_dev,
                ino: held.st_ino,
            },
            canonical,
        ))
    }

    /// A path that opens exactly this directory, whatever has happened to its name since:
    /// its descriptor in `/proc/self/fd` (which the kernel resolves to the open directory
    /// itself, not by name). Where there is no `/proc`, opening it fails, and the guest is
    /// refused rather than given a directory by name.
    pub fn descriptor_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// A directory the operator asks to give the guest, held open since it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirAsk {
    /// The host directory: absolute, canonical (symlinks resolved), UTF-8; the path of `dir`.
    host: PathBuf,
    /// The directory itself.
    dir: HostDir,
    /// Where the guest sees it.
    guest: String,
    /// Only `fs.read` is asked.
    read_only: bool,
}

impl DirAsk {
    /// Ask for the directory at `host` (opened now: see [`HostDir::open`]; no `..`, UTF-8)
    /// as `guest`, read-only when `read_only`.
    pub fn open(host: &Path, guest: &str, read_only: bool) -> Result<Self, String> {
        if host.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!(
                "`..` is not accepted in the host path `{}`",
                host.display()
            ));
        }
        let (dir, canonical) = HostDir::open(host)?;
        path_text(&canonical)?;
        Ok(Self {
            host: canonical,
            dir,
            guest: guest.to_owned(),
            read_only,
        })
    }

    /// The canonical host path asked for.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where the guest sees it.
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// Only `fs.read` is asked.
    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Everything the operator asks for one run: limits and handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asks {
    /// Linear-memory limit, bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit, milliseconds.
    pub timeout_ms: u64,
    /// Fuel; `None`: unmetered (asked without `fuel` in the context).
    pub fuel: Option<u64>,
    /// Directories.
    pub dirs: Vec<DirAsk>,
    /// Environment variables: name and value.
    pub env: Vec<(String, EnvValue)>,
    /// `host:port` pairs to connect to.
    pub net: Vec<String>,
    /// `host:port` pairs to make HTTP requests to (`warrant serve`'s `outbound`), canonical.
    pub http: Vec<String>,
    /// Where the artifact is instantiated (`instantiate`'s resource).
    pub runtime: super::Runtime,
}

impl Asks {
    /// The requests these asks make, `instantiate` first.
    pub fn requests(&self) -> Vec<Request> {
        let mut requests = vec![Request::Instantiate {
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            runtime: self.runtime.clone(),
        }];
        for dir in &self.dirs {
            requests.push(Request::FsRead(dir.host.clone()));
            if !dir.read_only {
                requests.push(Request::FsWrite(dir.host.clone()));
            }
        }
        requests.extend(self.env.iter().map(|(n, _)| Request::EnvRead(n.clone())));
        requests.extend(self.net.iter().cloned().map(Request::NetConnect));
        requests.extend(self.http.iter().cloned().map(Request::HttpOutgoing));
        requests
    }
}

/// An environment variable's value: handed to the guest, never recorded. It has no
/// `Serialize` and its `Debug` shows nothing, so no audit record, log line or JSON document
/// can hold it; only [`EnvValue::expose`] reads it, where the guest's context is built.
///
/// ```compile_fail,E0277
/// let value = broker::EnvValue::from("hunter2");
/// let _ = serde_json::to_string(&value);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct EnvValue(String);

impl EnvValue {
    /// The value, for the guest's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for EnvValue {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for EnvValue {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvValue(..)")
    }
}

/// A directory granted to the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirGrant {
    /// The host directory's canonical path, as decided.
    pub host: PathBuf,
    /// The directory itself, held open since it was asked for: what the guest is given.
    #[serde(skip)]
    pub dir: HostDir,
    /// Where the guest sees it.
    pub guest: String,
    /// `fs.write` was granted too.
    pub writable: bool,
}

/// What a run may have. Only [`Policies::grant`] makes one, from allowed decisions; the
/// sandbox builds the guest's handles from it and from nothing else. It is not serialisable:
/// it holds environment values ([`EnvValue`]); the audit log records it field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    digest: Digest,
    policy_hash: String,
    memory_bytes: u64,
    timeout_ms: u64,
    fuel: Option<u64>,
    dirs: Vec<DirGrant>,
    env: Vec<(String, EnvValue)>,
    net: Vec<String>,
    http: Vec<String>,
    decisions: Vec<Decision>,
}

impl Grant {
    /// The artifact granted.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// The policy set that decided.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }
    /// Linear-memory limit, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    /// Wall-clock limit.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
    /// Fuel, when metered.
    pub fn fuel(&self) -> Option<u64> {
        self.fuel
    }
    /// Granted directories.
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }
    /// Granted environment variables.
    pub fn env(&self) -> &[(String, EnvValue)] {
        &self.env
    }
    /// Granted `host:port` pairs.
    pub fn net(&self) -> &[String] {
        &self.net
    }
    /// Granted `host:port` pairs for outgoing HTTP requests.
    pub fn http(&self) -> &[String] {
        &self.http
    }
    /// Every decision made for this run.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }
}

/// A run refused by policy: every decision, and which were denied.
#[derive(Clone, Debug, Serialize)]
pub struct Denial {
    /// The artifact.
    pub digest: Digest,
    /// Every decision made.
    pub decisions: Vec<Decision>,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy denied `{}`:", self.digest)?;
        for d in self.decisions.iter().filter(|d| !d.allowed) {
            write!(f, " {}: {};", d.request, d.explanation())?;
        }
        Ok(())
    }
}

impl std::error::Error for Denial {}

impl Policies {
    /// Decide every request `asks` makes and build the [`Grant`]. `instantiate` must be
    /// allowed. Any other denied request refuses the run, unless `drop_denied`: then the run
    /// goes ahead without that handle (a directory whose `fs.write` is denied is given
    /// read-only).
    pub fn grant(&self, facts: &Facts, asks: &Asks, drop_denied: bool) -> Result<Grant, Denial> {
        let decisions = self.decide_all(facts, &asks.requests());
        grant_from(facts, asks, drop_denied, decisions, &self.hash)
    }

    /// As [`Policies::grant`], and when every request is allowed, remember the decisions in
    /// `memo` for exactly these sources (their [`validation_key`], which must be that of the
    /// sources these policies were loaded from), facts and requests.
    pub(crate) fn grant_remembering(
        &self,
        facts: &Facts,
        asks: &Asks,
        drop_denied: bool,
        memo: Option<(&dyn DecisionMemo, &[u8; 32])>,
    ) -> Result<Grant, Denial> {
        let grant = self.grant(facts, asks, drop_denied)?;
        let all_allowed = grant
            .decisions
            .iter()
            .all(|d| d.allowed && d.errors.is_empty());
        if let (Some((memo, sources)), true) = (memo, all_allowed) {
            let requests = asks.requests();
            let run = RememberedRun {
                policy_hash: self.hash.clone(),
                determining: grant
                    .decisions
                    .iter()
                    .map(|d| d.determining.clone())
                    .collect(),
            };
            if let Ok(body) = serde_json::to_string(&run) {
                memo.remember(&decision_key(sources, facts, &requests), &body);
            }
        }
        Ok(grant)
    }
}

/// The grant `decisions` (one per `asks.requests()`, in order) make, or the denial.
///
/// INVARIANT (grants from policies only): the one place a [`Grant`] is built, from decisions
/// the policies made (now, or remembered under the memo's MAC) for one artifact's facts.
pub(super) fn grant_from(
    facts: &Facts,
    asks: &Asks,
    drop_denied: bool,
    decisions: Vec<Decision>,
    policy_hash: &str,
) -> Result<Grant, Denial> {
    let allowed = |request: &Request| decisions.iter().any(|d| &d.request == request && d.allowed);
    let denial = || Denial {
        digest: facts.digest.clone(),
        decisions: decisions.clone(),
    };
    let instantiate = decisions.first().is_some_and(|d| d.allowed);
    if !instantiate || (!drop_denied && decisions.iter().any(|d| !d.allowed)) {
        return Err(denial());
    }
    let dirs = asks
        .dirs
        .iter()
        .filter(|d| allowed(&Request::FsRead(d.host.clone())))
        .map(|d| DirGrant {
            host: d.host.clone(),
            dir: d.dir.clone(),
            guest: d.guest.clone(),
            writable: !d.read_only && allowed(&Request::FsWrite(d.host.clone())),
        })
        .collect();
    let env = asks
        .env
        .iter()
        .filter(|(name, _)| allowed(&Request::EnvRead(name.clone())))
        .cloned()
        .collect();
    let net = asks
        .net
        .iter()
        .filter(|host| allowed(&Request::NetConnect((*host).clone())))
        .cloned()
        .collect();
    let http = asks
        .http
        .iter()
        .filter(|host| allowed(&Request::HttpOutgoing((*host).clone())))
        .cloned()
        .collect();
    Ok(Grant {
        digest: facts.digest.clone(),
        policy_hash: policy_hash.to_owned(),
        memory_bytes: asks.memory_bytes,
        timeout_ms: asks.timeout_ms,
        fuel: asks.fuel,
        dirs,
        env,
        net,
        http,
        decisions,
    })
}

/// Parse `--dir HOST::GUEST[:ro]`: the host path must be a directory, contain no `..`, and be
/// UTF-8; it is opened now, and its canonical path (symlinks resolved) is what is asked for;
/// if granted, the guest gets the directory opened here ([`HostDir`]).
pub fn parse_dir_ask(text: &str) -> Result<DirAsk, String> {
    let Some((host, guest)) = text.split_once("::") else {
        return Err(format!(
            "`--dir {text}`: expected `HOST::GUEST` or `HOST::GUEST:ro`"
        ));
    };
    let (guest, read_only) = match guest.strip_suffix(":ro") {
        Some(g) => (g, true),
        None => (guest, false),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!(
            "`--dir {text}`: both the host and the guest path are needed"
        ));
    }
    DirAsk::open(Path::new(host), guest, read_only).map_err(|e| format!("`--dir {text}`: {e}"))
}

/// An environment variable name: ASCII letters, digits and `_`, not starting with a digit.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an environment variable name (letters, digits, `_`)"
        ))
    }
}
