//! Flags shared by several commands: what a run asks for, and whose signatures count.

use std::path::PathBuf;

use super::error::CliError;
use crate::config::{Config, Size, Span};
use crate::policy::Asks;
use crate::sandbox::RunLimits;

/// What a run asks for: limits, and the handles policies must grant.
#[derive(Debug, clap::Args)]
pub(super) struct AskArgs {
    /// A host directory for the guest, `HOST::GUEST` (asks `fs.read` and `fs.write` on the
    /// canonical host path) or `HOST::GUEST:ro` (asks `fs.read`); repeatable
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro]")]
    dirs: Vec<String>,
    /// An environment variable for the guest, its value from `NAME=VALUE` or else from
    /// warrant's own environment (asks `env.read`); repeatable
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Let the guest connect to `HOST:PORT` (asks `net.connect`); repeatable
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    net: Vec<String>,
    /// Linear-memory limit: bytes, or with a unit, e.g. `64MiB` (default `[run] memory_bytes`,
    /// else 256MiB)
    #[arg(long, value_name = "SIZE")]
    memory: Option<Size>,
    /// Wall-clock limit, e.g. `500ms`, `10s` (default `[run] timeout`, else 10s)
    #[arg(long, value_name = "DURATION")]
    timeout: Option<Span>,
    /// Fuel: meter the guest and stop it after about this many instructions (default `[run]
    /// fuel`, else unmetered)
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
}

impl AskArgs {
    pub(super) fn asks(&self, config: &Config) -> Result<Asks, CliError> {
        let mut limits = RunLimits::default();
        if let Some(size) = self.memory.or(config.run.memory_bytes) {
            limits.memory_bytes = size.0;
        }
        if let Some(span) = self.timeout.or(config.run.timeout) {
            limits.timeout = span.0;
        }
        let mut asks = Asks {
            memory_bytes: limits.memory_bytes,
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            fuel: self.fuel.or(config.run.fuel),
            ..Asks::default()
        };
        for text in &self.dirs {
            asks.dirs
                .push(crate::policy::parse_dir_ask(text).map_err(CliError::Usage)?);
        }
        for text in &self.env {
            let (name, value) = match text.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = std::env::var(text).map_err(|_| {
                        CliError::Usage(format!(
                            "`--env {text}`: `{text}` is not set here; give `--env {text}=VALUE`"
                        ))
                    })?;
                    (text.clone(), value)
                }
            };
            crate::policy::check_env_name(&name).map_err(CliError::Usage)?;
            asks.env.push((name, value.into()));
        }
        for text in &self.net {
            // INVARIANT (one form): the host is asked, decided, recorded and connected to in
            // its canonical form.
            let canonical = crate::policy::canonical_host_port(text).map_err(CliError::Usage)?;
            asks.net.push(canonical);
        }
        Ok(asks)
    }
}

/// What a run asks for, for the `policy` commands: also as a pod's container would.
#[derive(Debug, clap::Args)]
pub(super) struct PolicyAskArgs {
    #[command(flatten)]
    asks: AskArgs,
    /// Ask as `containerd-shim-warrant-v1` asks for a container of pod `POD` in Kubernetes
    /// namespace `NAMESPACE`: `instantiate` on `Warrant::Runtime::"k8s/NAMESPACE"` with
    /// `context.pod`, the memory `--memory` gives (else the node's `[k8s] memory_bytes`), the
    /// node's pod deadline (`[k8s] timeout`, else none), no fuel, and `env.read` for each
    /// `--env`; a pod gets no directory or network
    #[arg(long, value_name = "NAMESPACE/POD")]
    pod: Option<String>,
}

impl PolicyAskArgs {
    pub(super) fn asks(&self, config: &Config) -> Result<Asks, CliError> {
        let mut asks = self.asks.asks(config)?;
        let Some(text) = &self.pod else {
            return Ok(asks);
        };
        let (namespace, pod) = text.split_once('/').ok_or_else(|| {
            CliError::Usage(format!(
                "`--pod {}`: give NAMESPACE/POD",
                registry_client::text::one_line(text)
            ))
        })?;
        asks.runtime = crate::policy::Runtime::pod(namespace, pod)
            .map_err(|e| CliError::Usage(format!("`--pod`: {e}")))?;
        if !self.asks.dirs.is_empty() || !self.asks.net.is_empty() || self.asks.fuel.is_some() {
            return Err(CliError::Usage(
                "a pod is given no directory, no network and no fuel: `--dir`, `--allow-net` \
                 and `--fuel` do not go with `--pod`"
                    .into(),
            ));
        }
        if self.asks.memory.is_none() {
            asks.memory_bytes = crate::pod::default_pod_memory(config);
        }
        if self.asks.timeout.is_some() {
            return Err(CliError::Usage(
                "a pod's deadline is the node's `[k8s] timeout`: `--timeout` does not go with \
                 `--pod`"
                    .into(),
            ));
        }
        asks.timeout_ms = crate::pod::pod_timeout_ms(&config.k8s);
        asks.fuel = None;
        Ok(asks)
    }
}

/// Who an artifact's signatures may come from.
#[derive(Debug, clap::Args)]
pub(super) struct TrustArgs {
    /// A public key (PEM) whose signatures count; repeatable
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// A keyless signer: the certificate's identity (SAN), matched exactly; repeatable, each
    /// paired with the `--certificate-oidc-issuer` in the same position
    #[arg(long = "certificate-identity", value_name = "IDENTITY")]
    identities: Vec<String>,
    /// The OIDC issuer of the `--certificate-identity` in the same position, matched exactly
    #[arg(long = "certificate-oidc-issuer", value_name = "URL")]
    issuers: Vec<String>,
    /// A keyless signer's identity as a regular expression that must match the whole SAN (it
    /// is anchored at both ends: `https://github.com/acme/.*` does not match `acme-evil`);
    /// repeatable. Identities pair with issuers in order, exact forms first, then patterns
    #[arg(long = "certificate-identity-regexp", value_name = "REGEX")]
    identity_regexps: Vec<String>,
    /// An OIDC issuer as a regular expression that must match the whole issuer; repeatable,
    /// paired in order after the exact `--certificate-oidc-issuer`s
    #[arg(long = "certificate-oidc-issuer-regexp", value_name = "REGEX")]
    issuer_regexps: Vec<String>,
    /// A Sigstore `trusted_root.json` for keyless signatures (default: `[verify]
    /// trusted_root` in the config, else the embedded public-good production root)
    #[arg(long, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
}

impl TrustArgs {
    pub(super) fn load(&self, config: &Config) -> Result<crate::verify::Trust, CliError> {
        self.load_with(config, false)
    }

    /// As `load`; with `any_identity` and no identity given, keyless signatures by any
    /// identity the root certifies become facts for policies.
    pub(super) fn load_with(
        &self,
        config: &Config,
        any_identity: bool,
    ) -> Result<crate::verify::Trust, CliError> {
        let identities = self.identities.len() + self.identity_regexps.len();
        let issuers = self.issuers.len() + self.issuer_regexps.len();
        if identities != issuers {
            return Err(CliError::Usage(format!(
                "{identities} certificate identit{} (`--certificate-identity`, \
                 `--certificate-identity-regexp`) but {issuers} issuer{} \
                 (`--certificate-oidc-issuer`, `--certificate-oidc-issuer-regexp`): give them in \
                 pairs",
                if identities == 1 { "y" } else { "ies" },
                if issuers == 1 { "" } else { "s" },
            )));
        }
        let pattern = |flag: &str, source: &String| {
            crate::verify::Match::pattern(source)
                .map_err(|e| CliError::Usage(format!("`--{flag}`: {e}")))
        };
        let identity_parts = self
            .identities
            .iter()
            .map(|i| Ok(crate::verify::Match::from(i.as_str())))
            .chain(
                self.identity_regexps
                    .iter()
                    .map(|p| pattern("certificate-identity-regexp", p)),
            )
            .collect::<Result<Vec<_>, CliError>>()?;
        let issuer_parts = self
            .issuers
            .iter()
            .map(|i| Ok(crate::verify::Match::from(i.as_str())))
            .chain(
                self.issuer_regexps
                    .iter()
                    .map(|p| pattern("certificate-oidc-issuer-regexp", p)),
            )
            .collect::<Result<Vec<_>, CliError>>()?;
        // The configuration's signers first, then the flags', which add to them.
        let keys = config
            .verify
            .keys
            .iter()
            .chain(&self.keys)
            .map(|path| crate::keys::read_public_key(path))
            .collect::<Result<Vec<_>, _>>()?;
        let identities = config
            .identities()
            .map_err(|e| CliError::Usage(format!("`[verify] certificate_identities`: {e}")))?
            .into_iter()
            .chain(
                identity_parts
                    .into_iter()
                    .zip(issuer_parts)
                    .map(|(identity, issuer)| crate::verify::Identity { identity, issuer }),
            )
            .collect();
        let root_path = self
            .trusted_root
            .as_deref()
            .or(config.verify.trusted_root.as_deref());
        let root = crate::verify::load_trusted_root(root_path)?;
        let trust = crate::verify::Trust::new(keys, identities, &root)?;
        Ok(if any_identity {
            trust.accepting_any_identity()
        } else {
            trust
        })
    }
}

/// `verify-blob`'s keyless signer: one identity and one issuer, each exact or an anchored
/// pattern.
#[derive(Debug, clap::Args)]
pub(super) struct BlobIdentityArgs {
    /// The signing certificate's identity (SAN), matched exactly
    #[arg(
        long,
        value_name = "IDENTITY",
        conflicts_with = "certificate_identity_regexp"
    )]
    certificate_identity: Option<String>,
    /// The signing certificate's identity as a regular expression that must match the whole
    /// SAN (anchored at both ends)
    #[arg(long, value_name = "REGEX")]
    certificate_identity_regexp: Option<String>,
    /// The signing certificate's OIDC issuer, matched exactly
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "certificate_oidc_issuer_regexp"
    )]
    certificate_oidc_issuer: Option<String>,
    /// The OIDC issuer as a regular expression that must match the whole issuer
    #[arg(long, value_name = "REGEX")]
    certificate_oidc_issuer_regexp: Option<String>,
}

impl BlobIdentityArgs {
    /// `--key`, or an identity and an issuer (each exact or a pattern): exactly one of the two.
    pub(super) fn requirement(
        self,
        key: Option<PathBuf>,
    ) -> Result<crate::verify::SignerRequirement, CliError> {
        use crate::verify::{Match, SignerRequirement};
        let pattern = |flag: &str, source: &str| {
            Match::pattern(source).map_err(|e| CliError::Usage(format!("`--{flag}`: {e}")))
        };
        let identity = match (self.certificate_identity, self.certificate_identity_regexp) {
            (Some(exact), _) => Some(Match::from(exact)),
            (None, Some(p)) => Some(pattern("certificate-identity-regexp", &p)?),
            (None, None) => None,
        };
        let issuer = match (
            self.certificate_oidc_issuer,
            self.certificate_oidc_issuer_regexp,
        ) {
            (Some(exact), _) => Some(Match::from(exact)),
            (None, Some(p)) => Some(pattern("certificate-oidc-issuer-regexp", &p)?),
            (None, None) => None,
        };
        match (key, identity, issuer) {
            (Some(key), None, None) => Ok(SignerRequirement::Key(key)),
            (None, Some(identity), Some(issuer)) => {
                Ok(SignerRequirement::Identity { identity, issuer })
            }
            _ => Err(CliError::Usage(
                "give `--key PUB`, or a certificate identity (`--certificate-identity` or \
                 `--certificate-identity-regexp`) with its issuer (`--certificate-oidc-issuer` \
                 or `--certificate-oidc-issuer-regexp`)"
                    .into(),
            )),
        }
    }
}
