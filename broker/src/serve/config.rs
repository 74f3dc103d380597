//! `[serve]` and `[[serve.tenant]]` in `warrant.toml`: parsed with the file, checked as a
//! whole before anything is served (names, routes, limits), relative paths resolved against
//! the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Size, Span};
use crate::policy::Runtime;

/// The serving defaults and caps.
pub mod limits {
    use std::time::Duration;

    /// Where the server listens unless told: loopback only; all interfaces only when
    /// configured.
    pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
    /// How long in-flight requests may finish after SIGTERM or SIGINT.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// A tenant's default linear-memory limit per request.
    pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
    /// A tenant's default deadline per request.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// A tenant's default requests in flight.
    pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;
    /// Largest request body a guest is handed; a larger one is refused with 413.
    pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 8 * 1024 * 1024;
    /// Largest response body a guest may send; past it the response is cut off.
    pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
    /// Time a client has to send a request's whole head: slow-header clients are dropped.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// Open connections at once; past it new ones are closed at once. High enough that a
    /// flood of idle connections (each dropped at the header-read timeout) does not keep other
    /// clients out: an idle connection costs a task and a few KiB. The server raises its
    /// open-file limit to its hard limit at start, and says so when that is below this cap.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16_384;
    /// Tenants in one server.
    pub const MAX_TENANTS: usize = 20_000;
    /// Longest tenant name.
    pub const MAX_NAME_BYTES: usize = 63;
    /// Outbound destinations of one tenant.
    pub const MAX_OUTBOUND: usize = 64;
    /// How often the audit log gets a signed checkpoint while serving.
    pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
}

/// `[serve]`, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// Where requests are served (default [`limits::DEFAULT_LISTEN`]).
    pub listen: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (none: not served).
    pub admin_listen: Option<String>,
    /// How long in-flight requests may finish at shutdown.
    pub shutdown_grace: Option<Span>,
    /// Open connections at once.
    pub max_connections: Option<u32>,
    /// Largest request body, every tenant.
    pub max_request_bytes: Option<Size>,
    /// Largest response body, every tenant.
    pub max_response_bytes: Option<Size>,
    /// How often a signed checkpoint is written.
    pub checkpoint_interval: Option<Span>,
    /// PEM certificates trusted for outgoing HTTPS besides the webpki roots.
    pub outbound_roots: Option<PathBuf>,
    /// The tenants.
    #[serde(default)]
    pub tenant: Vec<TenantSection>,
}

pub use crate::config::IdentitySection;

/// `[[serve.tenant]]`, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// `[a-z0-9-]+`, unique.
    pub name: String,
    /// `/acme`: whole path segments.
    pub route: String,
    /// The artifact.
    pub reference: String,
    /// Public keys that may sign it.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// Keyless signers that may sign it.
    #[serde(default)]
    pub certificate_identities: Vec<IdentitySection>,
    /// This tenant's policy directory (default: the global one).
    pub policies: Option<PathBuf>,
    /// `host:port` pairs its outgoing HTTP requests may reach, each asked as `http.outgoing`.
    #[serde(default)]
    pub outbound: Vec<String>,
    /// Linear memory per request.
    pub memory_bytes: Option<Size>,
    /// Deadline per request.
    pub timeout: Option<Span>,
    /// Requests in flight.
    pub max_concurrency: Option<u32>,
    /// Serve without the outbound hosts policy denied, instead of not at all.
    #[serde(default)]
    pub drop_denied: bool,
}

/// The server's settings, checked.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    /// Where requests are served.
    pub listen: SocketAddr,
    /// Where the admin endpoints are served.
    pub admin_listen: Option<SocketAddr>,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// Open connections at once.
    pub max_connections: u32,
    /// Largest request body.
    pub max_request_bytes: u64,
    /// Largest response body.
    pub max_response_bytes: u64,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// Extra roots for outgoing HTTPS.
    pub outbound_roots: Option<PathBuf>,
    /// The tenants, in the file's order.
    pub tenants: Vec<TenantSpec>,
}

/// A tenant, checked: what to load and how to serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSpec {
    /// Its name (`[a-z0-9-]+`, not reserved).
    pub name: String,
    /// Its route, normalised: `/` or `/seg/…` without a trailing slash.
    pub route: String,
    /// The artifact.
    pub reference: String,
    /// Key files, absolute or relative to the configuration file's directory.
    pub keys: Vec<PathBuf>,
    /// Keyless signers, their patterns compiled.
    pub identities: Vec<crate::verify::Identity>,
    /// The policy directory (the tenant's own, else the global one).
    pub policies: Option<PathBuf>,
    /// Outbound `host:port` pairs, canonical.
    pub outbound: Vec<String>,
    /// Linear memory per request.
    pub memory_bytes: u64,
    /// Deadline per request.
    pub timeout: Duration,
    /// Requests in flight.
    pub max_concurrency: u32,
    /// Serve without denied outbound hosts.
    pub drop_denied: bool,
}

impl TenantSpec {
    /// The runtime `instantiate` is asked on.
    pub fn runtime(&self) -> Runtime {
        Runtime::Tenant(self.name.clone())
    }
}

/// Check `[serve]`: `base` is the configuration file's directory (relative paths in tenants
/// are relative to it), `global_policies` the policy directory of the command line or the
/// file, `listen` and `admin_listen` the flags that override the file.
pub fn settings(
    section: &ServeSection,
    base: &Path,
    global_policies: Option<&Path>,
    listen: Option<&str>,
    admin_listen: Option<&str>,
) -> Result<ServeSettings, String> {
    let address = |what: &str, text: &str| -> Result<SocketAddr, String> {
        text.parse::<SocketAddr>().map_err(|_| {
            format!("`{what} = \"{text}\"`: expected an IP address and port, e.g. `127.0.0.1:8080`")
        })
    };
    let listen = address(
        "listen",
        listen
            .or(section.listen.as_deref())
            .unwrap_or(limits::DEFAULT_LISTEN),
    )?;
    let admin_listen = admin_listen
        .or(section.admin_listen.as_deref())
        .map(|a| address("admin_listen", a))
        .transpose()?;
    if section.tenant.len() > limits::MAX_TENANTS {
        return Err(format!(
            "{} tenants; the limit is {}",
            section.tenant.len(),
            limits::MAX_TENANTS
        ));
    }
    let mut tenants: Vec<TenantSpec> = Vec::with_capacity(section.tenant.len());
    let mut names = std::collections::HashSet::new();
    let mut routes = std::collections::HashMap::new();
    for t in &section.tenant {
        let spec = tenant(t, base, global_policies)?;
        if !names.insert(spec.name.clone()) {
            return Err(format!("tenant `{}` is named twice", spec.name));
        }
        if let Some(other) = routes.insert(spec.route.clone(), spec.name.clone()) {
            return Err(format!(
                "tenants `{other}` and `{}` have the same route `{}`",
                spec.name, spec.route
            ));
        }
        tenants.push(spec);
    }
    let size = |s: Option<Size>, default: u64| s.map_or(default, |s| s.0);
    Ok(ServeSettings {
        listen,
        admin_listen,
        shutdown_grace: section
            .shutdown_grace
            .map_or(limits::DEFAULT_SHUTDOWN_GRACE, |s| s.0),
        max_connections: section
            .max_connections
            .unwrap_or(limits::DEFAULT_MAX_CONNECTIONS)
            .max(1),
        max_request_bytes: size(section.max_request_bytes, limits::DEFAULT_MAX_REQUEST_BYTES),
        max_response_bytes: size(
            section.max_response_bytes,
            limits::DEFAULT_MAX_RESPONSE_BYTES,
        ),
        checkpoint_interval: section
            .checkpoint_interval
            .map_or(limits::CHECKPOINT_INTERVAL, |s| s.0)
            .max(Duration::from_secs(1)),
        outbound_roots: section.outbound_roots.as_ref().map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        }),
        tenants,
    })
}

fn tenant(
    t: &TenantSection,
    base: &Path,
    global_policies: Option<&Path>,
) -> Result<TenantSpec, String> {
    let name = &t.name;
    check_name(name)?;
    let route = normalise_route(&t.route).map_err(|e| format!("tenant `{name}`: {e}"))?;
    if t.keys.is_empty() && t.certificate_identities.is_empty() {
        return Err(format!(
            "tenant `{name}` names no signer: give `keys` or `certificate_identities` (an \
             unsigned artifact is never served)"
        ));
    }
    if t.outbound.len() > limits::MAX_OUTBOUND {
        return Err(format!(
            "tenant `{name}`: {} outbound destinations; the limit is {}",
            t.outbound.len(),
            limits::MAX_OUTBOUND
        ));
    }
    let mut outbound = Vec::with_capacity(t.outbound.len());
    for host in &t.outbound {
        let canonical = crate::policy::canonical_host_port(host)
            .map_err(|e| format!("tenant `{name}`: outbound `{host}`: {e}"))?;
        if !outbound.contains(&canonical) {
            outbound.push(canonical);
        }
    }
    let memory_bytes = t.memory_bytes.map_or(limits::DEFAULT_MEMORY_BYTES, |s| s.0);
    let pool_max = crate::sandbox::http::pool::MAX_MEMORY_BYTES;
    if memory_bytes > pool_max {
        return Err(format!(
            "tenant `{name}`: memory_bytes {memory_bytes} is over the server's per-instance \
             limit of {pool_max}"
        ));
    }
    let timeout = t.timeout.map_or(limits::DEFAULT_TIMEOUT, |s| s.0);
    if timeout.is_zero() {
        return Err(format!("tenant `{name}`: a zero timeout serves nothing"));
    }
    let max_concurrency = t.max_concurrency.unwrap_or(limits::DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 {
        return Err(format!("tenant `{name}`: max_concurrency 0 serves nothing"));
    }
    let relative = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    Ok(TenantSpec {
        name: name.clone(),
        route,
        reference: t.reference.clone(),
        keys: t.keys.iter().map(relative).collect(),
        identities: t
            .certificate_identities
            .iter()
            .map(|i| i.identity().map_err(|e| format!("tenant `{name}`: {e}")))
            .collect::<Result<_, _>>()?,
        policies: t
            .policies
            .as_ref()
            .map(relative)
            .or_else(|| global_policies.map(Path::to_path_buf)),
        outbound,
        memory_bytes,
        timeout,
        max_concurrency,
        drop_denied: t.drop_denied,
    })
}

/// `[a-z0-9-]+`, at most [`limits::MAX_NAME_BYTES`], not a reserved runtime id.
pub fn check_name(name: &str) -> Result<(), String> {
    let shown = registry_client::text::for_terminal(name);
    if name.is_empty()
        || name.len() > limits::MAX_NAME_BYTES
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "tenant name `{shown}`: expected 1 to {} of `a-z`, `0-9` and `-`",
            limits::MAX_NAME_BYTES
        ));
    }
    if Runtime::RESERVED.contains(&name) {
        return Err(format!(
            "tenant name `{name}` is reserved (`Warrant::Runtime::\"{name}\"` is not a tenant's)"
        ));
    }
    Ok(())
}

/// A route as matched: `/` or `/seg/…`, each segment non-empty and not `.` or `..`, no
/// trailing slash, no query or fragment, ASCII without controls or `%` (matched against the
/// path as the client sent it, so an encoded spelling never matches another tenant's).
pub fn normalise_route(route: &str) -> Result<String, String> {
    let shown = registry_client::text::for_terminal(route);
    if !route.starts_with('/') {
        return Err(format!("route `{shown}` must start with `/`"));
    }
    if route
        .bytes()
        .any(|b| !b.is_ascii_graphic() || matches!(b, b'?' | b'#' | b'%' | b'\\'))
    {
        return Err(format!(
            "route `{shown}`: only printable ASCII without `?`, `#`, `%` or `\\`"
        ));
    }
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    for segment in trimmed.split('/').skip(1) {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "route `{shown}`: empty, `.` and `..` segments are not routes"
            ));
        }
    }
    Ok(trimmed.to_owned())
}

/// Whether the request path `path` (without its query) is under `route`: equal to it, or
/// below it by whole segments (`/acme` matches `/acme` and `/acme/x`, not `/acme-x`).
pub fn route_matches(route: &str, path: &str) -> bool {
    if route == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_whole_segments_only() {
        assert!(route_matches("/acme", "/acme"));
        assert!(route_matches("/acme", "/acme/"));
        assert!(route_matches("/acme", "/acme/fn/x"));
        assert!(!route_matches("/acme", "/acme-x"));
        assert!(!route_matches("/acme", "/acm"));
        assert!(!route_matches("/acme", "/ACME"));
        assert!(route_matches("/", "/anything"));
        assert!(route_matches("/a/b", "/a/b/c"));
        assert!(!route_matches("/a/b", "/a/bc"));
    }

    #[test]
    fn routes_are_normalised_or_refused() {
        assert_eq!(normalise_route("/acme/").unwrap(), "/acme");
        assert_eq!(normalise_route("/").unwrap(), "/");
        assert_eq!(normalise_route("///").unwrap(), "/");
        for bad in [
            "acme", "/a//b", "/a/../b", "/a/./b", "/a?b", "/a%2fb", "/a b", "/a\u{1b}",
        ] {
            assert!(normalise_route(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_checked_and_runtime_ids_reserved() {
        assert!(check_name("acme-2").is_ok());
        for bad in [
            "",
            "Acme",
            "a_b",
            "a.b",
            "a/b",
            "cli",
            "serve",
            "k8s",
            &"a".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    fn section(text: &str) -> ServeSection {
        #[derive(Deserialize)]
        struct File {
            serve: ServeSection,
        }
        toml::from_str::<File>(text).unwrap().serve
    }

    #[test]
    fn a_tenant_is_checked_and_its_paths_are_relative_to_the_file() {
        let s = section(
            r#"
            [serve]
            listen = "127.0.0.1:0"
            [[serve.tenant]]
            name = "acme"
            route = "/acme/"
            reference = "127.0.0.1:5000/acme/fn:v1"
            keys = ["keys/acme.pub"]
            policies = "policies/acme"
            outbound = ["API.example.com.:443", "api.example.com:443"]
            memory_bytes = "32MiB"
            timeout = "2s"
            "#,
        );
        let settings = settings(&s, Path::new("/etc/warrant"), None, None, None).unwrap();
        let t = &settings.tenants[0];
        assert_eq!(t.route, "/acme");
        assert_eq!(t.keys, vec![PathBuf::from("/etc/warrant/keys/acme.pub")]);
        assert_eq!(
            t.policies,
            Some(PathBuf::from("/etc/warrant/policies/acme"))
        );
        assert_eq!(t.outbound, vec!["api.example.com:443".to_owned()]);
        assert_eq!(t.memory_bytes, 32 << 20);
        assert_eq!(t.timeout, Duration::from_secs(2));
        assert_eq!(t.max_concurrency, limits::DEFAULT_MAX_CONCURRENCY);
    }

    #[test]
    fn a_tenants_identity_patterns_are_compiled_and_anchored() {
        let s = section(
            r#"
            [serve]
            [[serve.tenant]]
            name = "acme"
            route = "/acme"
            reference = "r/acme:v1"
            certificate_identities = [
              { identity_regexp = 'https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/tags/v.*', issuer = "https://token.actions.githubusercontent.com" },
              { identity = "release@acme.example", issuer_regexp = 'https://accounts\.google\.com' },
            ]
            "#,
        );
        let settings = settings(&s, Path::new("/"), None, None, None).unwrap();
        let [pattern, exact] = settings.tenants[0].identities.as_slice() else {
            panic!("two identities");
        };
        let github = "https://token.actions.githubusercontent.com";
        assert!(pattern.matches(
            "https://github.com/acme/fn/.github/workflows/release.yml@refs/tags/v1",
            github
        ));
        assert!(!pattern.matches(
            "https://github.com/acme-evil/fn/.github/workflows/release.yml@refs/tags/v1",
            github
        ));
        assert!(!pattern.matches(
            "https://github.com/acme/fn/.github/workflows/release.yml@refs/tags/v1",
            &format!("{github}/x")
        ));
        assert!(exact.matches("release@acme.example", "https://accounts.google.com"));
        assert!(!exact.matches("release@acme.example", "https://accounts.google.com.evil"));
    }

    #[test]
    fn unsigned_duplicate_and_unroutable_tenants_are_refused() {
        let base = r#"
            [[serve.tenant]]
            name = "acme"
            route = "/acme"
            reference = "r/acme:v1"
            keys = ["a.pub"]
        "#;
        let cases = [
            (
                "no signer",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/b\"\nreference = \"r/b:v1\"\n",
                "names no signer",
            ),
            (
                "same name",
                "[[serve.tenant]]\nname = \"acme\"\nroute = \"/b\"\nreference = \"r/b:v1\"\nkeys = [\"b.pub\"]\n",
                "named twice",
            ),
            (
                "same route",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/acme/\"\nreference = \"r/b:v1\"\nkeys = [\"b.pub\"]\n",
                "same route",
            ),
            (
                "numeric outbound",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/b\"\nreference = \"r/b:v1\"\nkeys = [\"b.pub\"]\noutbound = [\"2130706433:80\"]\n",
                "outbound",
            ),
            (
                "an identity given both ways",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/b\"\nreference = \"r/b:v1\"\ncertificate_identities = [{ identity = \"x\", identity_regexp = \"x.*\", issuer = \"i\" }]\n",
                "exactly one of `identity` and `identity_regexp`",
            ),
            (
                "an issuer not given",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/b\"\nreference = \"r/b:v1\"\ncertificate_identities = [{ identity_regexp = \"x.*\" }]\n",
                "exactly one of `issuer` and `issuer_regexp`",
            ),
            (
                "a pattern that does not compile",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/b\"\nreference = \"r/b:v1\"\ncertificate_identities = [{ identity_regexp = \"(x\", issuer = \"i\" }]\n",
                "tenant `b`: pattern `(x` is not a valid regular expression",
            ),
            (
                "huge memory",
                "[[serve.tenant]]\nname = \"b\"\nroute = \"/b\"\nreference = \"r/b:v1\"\nkeys = [\"b.pub\"]\nmemory_bytes = \"4GiB\"\n",
                "per-instance limit",
            ),
        ];
        for (what, extra, expected) in cases {
            let s = section(&format!("[serve]\n{base}\n{extra}"));
            let e = settings(&s, Path::new("/"), None, None, None).unwrap_err();
            assert!(e.contains(expected), "{what}: {e}");
        }
    }
}
