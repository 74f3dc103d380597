//! `warrant.toml`: the operator's configuration. Every field is optional; flags override it.
//!
//! ```toml
//! store = "/var/lib/warrant/store"        # the local OCI image-layout store
//! audit_log = "/var/log/warrant/audit.log"
//! audit_keep_every = 1000                 # records between kept audit checkpoints
//! policies = "/etc/warrant/policies"
//!
//! [registry]
//! insecure = ["registry.internal:5000"]   # plain HTTP allowed (loopback always is)
//! connect_timeout = "10s"
//! read_timeout = "30s"
//! operation_deadline = "5m"
//! max_module_bytes = "256MiB"            # a size: bytes, or with a unit (KiB, MiB, GiB, kB, MB, GB)
//! credentials = "/etc/warrant/docker-config.json"  # default: ~/.docker/config.json
//!
//! [verify]
//! keys = ["release.pub"]                 # public keys whose signatures count
//! certificate_identities = [              # keyless signers: exact, or anchored patterns
//!   { identity = "ops@example.com", issuer = "https://accounts.google.com" },
//!   { identity_regexp = 'https://github\.com/acme/.*', issuer = "https://token.actions.githubusercontent.com" },
//! ]
//! trusted_root = "trusted_root.json"
//!
//! [k8s]                                   # containerd-shim-warrant-v1, the node's pods
//! data_dir = "/var/lib/warrant"
//! timeout = "1h"                          # none by default: pods run until stopped
//! memory_bytes = "128MiB"                 # for containers with no memory limit
//!
//! [run]
//! memory_bytes = "256MiB"
//! timeout = "10s"                         # a duration: 500ms, 10s, 5m, 1h
//! output_bytes = 1048576
//! ```
//!
//! A relative path in the file is relative to the file's directory, whatever the working
//! directory (a containerd shim starts in its bundle, not where the operator stood).
//!
//! Unknown keys are an error: a misspelt limit must not silently fall back to a default.
//! Durations and sizes are parsed when the file is read: a bad value is an error at start,
//! naming the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The parsed configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store directory.
    pub store: Option<PathBuf>,
    /// The audit log directory.
    pub audit_log: Option<PathBuf>,
    /// The audit log's checkpoint key (Ed25519, PKCS#8), created on first use.
    pub audit_key: Option<PathBuf>,
    /// How many records the audit log grows by between kept checkpoints (default 1,000;
    /// `audits::DEFAULT_KEEP_EVERY`); the end-of-run checkpoints in between replace the
    /// log's head checkpoint. 0 keeps every run's checkpoint.
    pub audit_keep_every: Option<u64>,
    /// The policy directory.
    pub policies: Option<PathBuf>,
    /// Registry access.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Default limits for `warrant run`.
    #[serde(default)]
    pub run: RunConfig,
    /// Signature verification.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// `warrant serve`: the listeners and the tenants.
    #[serde(default)]
    pub serve: crate::serve::config::ServeSection,
    /// `containerd-shim-warrant-v1`: how a node runs pods.
    #[serde(default)]
    pub k8s: K8sConfig,
    /// The file this was read from, if any (`[[serve.tenant]]` paths are relative to its
    /// directory).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[verify]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// A Sigstore `trusted_root.json` for keyless signatures (a private Sigstore deployment);
    /// the public-good production root when absent. `--trusted-root` overrides it.
    pub trusted_root: Option<PathBuf>,
    /// Public keys (PEM) whose signatures count, for every command that verifies; `--key`
    /// adds to them.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// Keyless signers whose signatures count; `--certificate-identity` (and its `-regexp`
    /// form) adds to them.
    #[serde(default)]
    pub certificate_identities: Vec<IdentitySection>,
    /// How long `warrant run` trusts a cached positive verdict, e.g. `"1h"` (the default);
    /// `"0s"` turns the cache off.
    pub cache_ttl: Option<Span>,
}

/// A keyless signer: `{ identity = "…", issuer = "…" }`, either part exact or, as
/// `identity_regexp` / `issuer_regexp`, an anchored pattern (`[verify]` and a serve tenant).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// The certificate's identity (SAN), matched exactly.
    #[serde(default)]
    pub identity: Option<String>,
    /// … or a regular expression that must match the whole SAN.
    #[serde(default)]
    pub identity_regexp: Option<String>,
    /// The OIDC issuer, matched exactly.
    #[serde(default)]
    pub issuer: Option<String>,
    /// … or a regular expression that must match the whole issuer.
    #[serde(default)]
    pub issuer_regexp: Option<String>,
}

impl IdentitySection {
    /// The trusted identity: exactly one of `identity` and `identity_regexp`, and one of
    /// `issuer` and `issuer_regexp`, each pattern compiled.
    pub fn identity(&self) -> Result<crate::verify::Identity, String> {
        let part =
            |exact: &Option<String>, pattern: &Option<String>, what: &str| match (exact, pattern) {
                (Some(exact), None) => Ok(crate::verify::Match::from(exact.as_str())),
                (None, Some(pattern)) => crate::verify::Match::pattern(pattern),
                _ => Err(format!(
                    "a certificate identity needs exactly one of `{what}` and `{what}_regexp`"
                )),
            };
        Ok(crate::verify::Identity {
            identity: part(&self.identity, &self.identity_regexp, "identity")?,
            issuer: part(&self.issuer, &self.issuer_regexp, "issuer")?,
        })
    }
}

/// `[k8s]`: how `containerd-shim-warrant-v1` runs a node's pods.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// The node's private state (verdict cache, compile cache, keys; the store and the audit
    /// log unless `store` and `audit_log` say otherwise): default `/var/lib/warrant`.
    pub data_dir: Option<PathBuf>,
    /// A deadline for every pod's guest, e.g. `"1h"`. None by default: a pod runs until it
    /// exits or is stopped.
    pub timeout: Option<Span>,
    /// Memory for a container that sets no memory limit (default: `[run] memory_bytes`, else
    /// 256 MiB).
    pub memory_bytes: Option<Size>,
    /// Leave denied environment variables out of the guest (recorded) instead of failing the
    /// task.
    #[serde(default)]
    pub drop_denied: bool,
}

/// `[registry]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries reached over plain HTTP although not loopback.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Connect timeout, e.g. `"10s"`.
    pub connect_timeout: Option<Span>,
    /// Read timeout.
    pub read_timeout: Option<Span>,
    /// Total time per operation.
    pub operation_deadline: Option<Span>,
    /// Largest Wasm layer accepted.
    pub max_module_bytes: Option<Size>,
    /// A Docker `config.json` with registry credentials.
    pub credentials: Option<PathBuf>,
}

/// `[run]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Guest linear-memory limit.
    pub memory_bytes: Option<Size>,
    /// Wall-clock limit, e.g. `"10s"`.
    pub timeout: Option<Span>,
    /// Cap on captured stdout and on stderr, each.
    pub output_bytes: Option<Size>,
    /// Fuel for each run (metered only when set).
    pub fuel: Option<u64>,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config `{path}`: {source}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config `{path}`: {reason}", path = .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A duration was not `<number><unit>`.
    #[error("invalid duration `{0}`: expected e.g. `500ms`, `10s`, `5m`")]
    Duration(String),
    /// A size was not a number of bytes, with or without a unit.
    #[error(
        "invalid size `{0}`: expected a number of bytes, or one with a unit: `64MiB`, `512KiB`, `1GiB`, `10MB`"
    )]
    Size(String),
}

/// A duration, written `500ms`, `10s`, `5m` or `1h` (a bare number is seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl std::str::FromStr for Span {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text).map(Self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written as a number of bytes or with a unit: `KiB`, `MiB`, `GiB`, `TiB`
/// (powers of 1024) or `kB`, `MB`, `GB`, `TB` (powers of 1000), e.g. `64MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ConfigError::Size(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let n: u64 = number.parse().map_err(|_| invalid())?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(invalid()),
        };
        n.checked_mul(scale).map(Self).ok_or_else(invalid)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bytes(n) => Ok(Self(n)),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Config {
    /// Load `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        };
        for (i, identity) in config.verify.certificate_identities.iter().enumerate() {
            identity
                .identity()
                .map_err(|e| invalid(format!("`[verify] certificate_identities[{i}]`: {e}")))?;
        }
        config.resolve_relative_to(path.parent().unwrap_or(Path::new("")));
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Make every relative path of the file (but the serve tenants', which `serve` resolves
    /// against the same directory) relative to `base`, the file's directory.
    fn resolve_relative_to(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            self.store.as_mut(),
            self.audit_log.as_mut(),
            self.audit_key.as_mut(),
            self.policies.as_mut(),
            self.registry.credentials.as_mut(),
            self.verify.trusted_root.as_mut(),
            self.k8s.data_dir.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        self.verify.keys.iter_mut().for_each(resolve);
    }

    /// How the registry is reached: `[registry]`, credentials read from its `credentials`
    /// file, else the user's Docker `config.json` if any.
    pub fn client_options(&self) -> Result<registry_client::ClientOptions, registry_client::Error> {
        let r = &self.registry;
        let mut options = registry_client::ClientOptions {
            insecure_registries: r.insecure.clone(),
            credentials: match &r.credentials {
                Some(path) => registry_client::Credentials::from_file(path)?,
                None => registry_client::Credentials::from_default_location()?,
            },
            ..registry_client::ClientOptions::default()
        };
        if let Some(span) = r.connect_timeout {
            options.connect_timeout = span.0;
        }
        if let Some(span) = r.read_timeout {
            options.read_timeout = span.0;
        }
        if let Some(span) = r.operation_deadline {
            options.operation_deadline = span.0;
        }
        if let Some(size) = r.max_module_bytes {
            options.max_module_bytes = size.0;
        }
        Ok(options)
    }

    /// The keyless signers of `[verify] certificate_identities` (each checked when the file
    /// was read).
    pub fn identities(&self) -> Result<Vec<crate::verify::Identity>, String> {
        self.verify
            .certificate_identities
            .iter()
            .map(IdentitySection::identity)
            .collect()
    }

    /// Load `explicit` if given, else `$WARRANT_CONFIG`, else `warrant.toml` in the user's
    /// config directory if it exists, else the defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        if let Some(path) = explicit {
            return Self::load(path);
        }
        if let Some(path) = std::env::var_os("WARRANT_CONFIG") {
            return Self::load(Path::new(&path));
        }
        match default_config_path() {
            Some(path) if path.exists() => Self::load(&path),
            _ => Ok(Self::default()),
        }
    }
}

/// Parse `500ms`, `10s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| ConfigError::Duration(text.to_owned()))?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(ConfigError::Duration(text.to_owned())),
    };
    Ok(duration)
}

/// Warrant's data directory: `$WARRANT_HOME`, else `$XDG_DATA_HOME/warrant`, else
/// `~/.local/share/warrant`, else `./.warrant-data`.
pub fn data_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("WARRANT_HOME") {
        return PathBuf::from(home);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("warrant");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/warrant");
    }
    PathBuf::from(".warrant-data")
}

fn default_config_path() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(xdg).join("warrant/warrant.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/warrant/warrant.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        for bad in ["", "s", "10x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warrant.toml");
        std::fs::write(&path, "[run]\nmemory_byte = 1\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(err.to_string().contains("memory_byte"), "{err}");
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warrant.toml");
        std::fs::write(
            &path,
            "store = \"s\"\npolicies = \"/etc/p\"\naudit_log = \"./log\"\n[verify]\nkeys = [\"a.pub\", \"/k/b.pub\"]\ntrusted_root = \"root.json\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.store, Some(dir.path().join("s")));
        assert_eq!(config.policies, Some(PathBuf::from("/etc/p")));
        assert_eq!(config.audit_log, Some(dir.path().join("./log")));
        assert_eq!(
            config.verify.keys,
            [dir.path().join("a.pub"), PathBuf::from("/k/b.pub")]
        );
        assert_eq!(
            config.verify.trusted_root,
            Some(dir.path().join("root.json"))
        );
    }

    #[test]
    fn verify_identities_are_checked_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warrant.toml");
        std::fs::write(
            &path,
            "[verify]\ncertificate_identities = [{ identity = \"a@b\", issuer = \"https://i\" }, { identity_regexp = 'https://github\\.com/acme/.*', issuer_regexp = 'https://(a|b)' }]\n",
        )
        .unwrap();
        let ids = Config::load(&path).unwrap().identities().unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids[1].identity.matches("https://github.com/acme/x"));
        assert!(!ids[1].identity.matches("https://github.com/acme-evil/x"));
        for (bad, names) in [
            ("{ identity = \"a\" }", "certificate_identities[0]"),
            (
                "{ identity = \"a\", identity_regexp = \"a\", issuer = \"i\" }",
                "identity_regexp",
            ),
            (
                "{ identity_regexp = \"(\", issuer = \"i\" }",
                "certificate_identities[0]",
            ),
        ] {
            std::fs::write(
                &path,
                format!("[verify]\ncertificate_identities = [{bad}]\n"),
            )
            .unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(err.contains(names), "{bad}: {err}");
        }
    }

    #[test]
    fn a_full_config_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warrant.toml");
        std::fs::write(
            &path,
            "store = \"/s\"\n[registry]\ninsecure = [\"r:5000\"]\nread_timeout = \"3s\"\n[run]\ntimeout = \"1s\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.store.as_deref(), Some(Path::new("/s")));
        assert_eq!(c.registry.insecure, vec!["r:5000".to_owned()]);
        assert_eq!(c.run.timeout, Some(Span(Duration::from_secs(1))));
        assert_eq!(c.registry.read_timeout, Some(Span(Duration::from_secs(3))));
    }

    #[test]
    fn sizes_take_units() {
        let size = |text: &str| text.parse::<Size>().map(|s| s.0);
        assert_eq!(size("268435456").unwrap(), 268_435_456);
        assert_eq!(size("64MiB").unwrap(), 64 << 20);
        assert_eq!(size("512KiB").unwrap(), 512 << 10);
        assert_eq!(size("1GiB").unwrap(), 1 << 30);
        assert_eq!(size("10MB").unwrap(), 10_000_000);
        assert_eq!(size("7B").unwrap(), 7);
        for bad in [
            "",
            "MiB",
            "64mib",
            "1.5GiB",
            "-1",
            "64 MiBs",
            "99999999999TiB",
        ] {
            assert!(
                matches!(size(bad), Err(ConfigError::Size(_))),
                "{bad:?} must be refused"
            );
        }
    }

    /// A bad duration or size is an error when the file is read, naming the key.
    #[test]
    fn a_bad_value_is_refused_at_load_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warrant.toml");
        for (text, key) in [
            ("[run]\ntimeout = \"10 parsecs\"\n", "timeout"),
            ("[run]\nmemory_bytes = \"64 megs\"\n", "memory_bytes"),
            (
                "[registry]\nconnect_timeout = \"soon\"\n",
                "connect_timeout",
            ),
            ("[verify]\ncache_ttl = \"1d\"\n", "cache_ttl"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load(&path).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        std::fs::write(
            &path,
            "[run]\nmemory_bytes = \"64MiB\"\noutput_bytes = 4096\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.run.memory_bytes, Some(Size(64 << 20)));
        assert_eq!(c.run.output_bytes, Some(Size(4096)));
    }
}
