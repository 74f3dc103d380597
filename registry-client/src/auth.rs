//! Registry credentials from a Docker `config.json` (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`).
//!
//! Supported entries under `auths`: `auth` (base64 `user:password`), `username` + `password`,
//! and `registrytoken` (a bearer token sent as is). Credential helpers (`credsStore`,
//! `credHelpers`) run external programs and are not consulted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::Error;

/// Largest credentials file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// One registry's credential.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP basic, also used to obtain bearer tokens from the registry's token service.
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// A registry bearer token, sent as is.
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// Credentials by registry host.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_registry: BTreeMap<String, Credential>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

impl Credentials {
    /// No credentials: every registry is accessed anonymously.
    pub fn none() -> Self {
        Self::default()
    }

    /// Load from the default location; a missing file means no credentials.
    pub fn from_default_location() -> Result<Self, Error> {
        match default_path() {
            Some(path) if path.exists() => Self::from_file(&path),
            _ => Ok(Self::none()),
        }
    }

    /// Load from a Docker `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::Credentials {
            path: path.to_owned(),
            reason,
        };
        let bytes = crate::layout::read_file_bounded(path, MAX_CONFIG_BYTES, "credentials file")
            .map_err(|e| bad(e.to_string()))?;
        let config: DockerConfig =
            crate::json::parse(&bytes, "credentials file").map_err(|e| bad(e.to_string()))?;
        let mut by_registry = BTreeMap::new();
        for (key, entry) in config.auths {
            let credential = if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
                Credential::Bearer(token)
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| bad(format!("`auths.{key}.auth` is not base64: {e}")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| bad(format!("`auths.{key}.auth` is not UTF-8")))?;
                let (username, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| bad(format!("`auths.{key}.auth` is not `user:password`")))?;
                Credential::Basic {
                    username: username.to_owned(),
                    password: password.to_owned(),
                }
            } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
                Credential::Basic { username, password }
            } else {
                continue;
            };
            by_registry.insert(normalise_key(&key), credential);
        }
        Ok(Self { by_registry })
    }

    /// Add or replace one registry's credential.
    pub fn insert(&mut self, registry: &str, credential: Credential) {
        self.by_registry.insert(normalise_key(registry), credential);
    }

    /// The credential for `registry` (`host[:port]`), if any.
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_registry.get(&normalise_key(registry))
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `ghcr.io` → `ghcr.io`.
fn normalise_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
        other => other.to_ascii_lowercase(),
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_and_bearer_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{
                    "https://index.docker.io/v1/":{{"auth":"{auth}"}},
                    "ghcr.io":{{"username":"bob","password":"pw"}},
                    "localhost:5000":{{"registrytoken":"tok"}},
                    "empty.example":{{}}
                }},"credsStore":"desktop"}}"#
            ),
        )
        .unwrap();
        let creds = Credentials::from_file(&path).unwrap();
        assert_eq!(
            creds.get("docker.io"),
            Some(&Credential::Basic {
                username: "alice".into(),
                password: "s3:cret".into()
            })
        );
        assert!(
            matches!(creds.get("ghcr.io"), Some(Credential::Basic { username, .. }) if username == "bob")
        );
        assert_eq!(
            creds.get("localhost:5000"),
            Some(&Credential::Bearer("tok".into()))
        );
        assert_eq!(creds.get("empty.example"), None);
        assert!(!format!("{creds:?}").contains("s3:cret"));
    }

    #[test]
    fn malformed_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"x":{"auth":"!!!"}}}"#).unwrap();
        let err = Credentials::from_file(&path).unwrap_err();
        assert!(matches!(err, Error::Credentials { .. }));
        assert!(err.to_string().contains("config.json"));
    }
}
