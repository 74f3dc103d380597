//! The outbound gate: a tenant's `wasi:http/outgoing-handler` requests reach only the
//! `host:port` pairs `http.outgoing` granted it, checked on the destination itself.
//!
//! - The request must carry its own authority. It is never taken from anything else (the
//!   incoming request's `Host` header least of all: CVE-2024-32980).
//! - The host and port as the guest wrote them, in their one canonical spelling (lowercase, no
//!   trailing dot; see [`crate::policy::canonical_host_port`]), must be a granted pair. A
//!   spelling with no canonical form (`2130706433`, `0x7f000001`, `0177.1`, a user name
//!   before `@`) is refused outright, even if it denotes a granted address; a name is never
//!   its address (`localhost` is not `127.0.0.1`).
//! - Warrant resolves a name itself and connects only to an address that name resolved to,
//!   and never, for a granted *name*, to a loopback, private, link-local, shared, multicast
//!   or unspecified address: only a grant of that IP literal reaches one.
//! - No redirect is followed (the response goes to the guest as it is); HTTPS is verified by
//!   rustls against the webpki roots (and the roots the operator adds).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::uri::Scheme;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::metrics::TenantMetrics;

/// The gate's own bounds.
pub mod limits {
    use std::time::Duration;
    /// Time to resolve a name.
    pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Time to connect (and finish TLS), unless the guest asks for less.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Time to the response's head, unless the guest asks for less. The tenant's deadline
    /// bounds everything anyway.
    pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
}

/// The grants and the TLS configuration every request of a tenant shares.
pub struct Gate {
    tenant: String,
    allowed: Vec<String>,
    tls: Arc<rustls::ClientConfig>,
    metrics: Arc<TenantMetrics>,
}

/// Per-request counts of outgoing requests let through and refused.
#[derive(Default)]
pub struct Counts {
    /// Let through.
    pub allowed: AtomicU32,
    /// Refused.
    pub denied: AtomicU32,
}

impl Gate {
    /// A gate letting through exactly `allowed` (canonical `host:port` pairs, as granted).
    pub fn new(
        tenant: &str,
        allowed: Vec<String>,
        tls: Arc<rustls::ClientConfig>,
        metrics: Arc<TenantMetrics>,
    ) -> Self {
        Self {
            tenant: tenant.to_owned(),
            allowed,
            tls,
            metrics,
        }
    }

    /// The hooks for one request, counting into `counts`.
    pub fn hooks(self: &Arc<Self>, counts: Arc<Counts>) -> Box<dyn WasiHttpHooks> {
        Box::new(Hooks {
            gate: self.clone(),
            counts,
        })
    }

    /// Where `uri` may go: its canonical `host:port`, whether to use TLS, and the addresses
    /// to connect to — or why not.
    async fn destination(&self, uri: &http::Uri) -> Result<Destination, Refusal> {
        // INVARIANT (outbound by grant): the authority as written must be a granted pair, and
        // only addresses resolved here for it (public ones, for a granted name) are connected.
        let target = check_target(uri, &self.allowed)?;
        let addresses = match target.literal {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => {
                let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
                let found = tokio::time::timeout(limits::RESOLVE_TIMEOUT, lookup)
                    .await
                    .map_err(|_| Refusal::Unresolved(target.canonical.clone()))?
                    .map_err(|_| Refusal::Unresolved(target.canonical.clone()))?;
                let (public, internal): (Vec<_>, Vec<_>) = found.partition(|a| is_public(a.ip()));
                if public.is_empty() {
                    return Err(match internal.first() {
                        Some(a) => Refusal::Internal(target.canonical.clone(), a.ip()),
                        None => Refusal::Unresolved(target.canonical.clone()),
                    });
                }
                public
            }
        };
        Ok(Destination {
            name: target.host,
            tls: target.tls,
            addresses,
        })
    }
}

struct Destination {
    name: String,
    tls: bool,
    addresses: Vec<SocketAddr>,
}

/// A request's target, checked against the grants.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The canonical `host:port`, as granted.
    pub canonical: String,
    /// The host to resolve (or the literal).
    pub host: String,
    /// The port.
    pub port: u16,
    /// An IP literal, when the host is one.
    pub literal: Option<IpAddr>,
    /// HTTPS.
    pub tls: bool,
}

/// Why an outgoing request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No authority in the request.
    NoAuthority,
    /// User information before `@`.
    UserInfo,
    /// A scheme other than `http` and `https`.
    Scheme(String),
    /// The host has no canonical spelling.
    Spelling(String),
    /// Not a granted pair.
    NotGranted(String),
    /// The name did not resolve.
    Unresolved(String),
    /// A granted name resolved only to internal addresses.
    Internal(String, IpAddr),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let safe = |s: &str| registry_client::text::for_terminal(s).into_owned();
        match self {
            Self::NoAuthority => write!(f, "the request names no host"),
            Self::UserInfo => write!(f, "the request's authority carries user information"),
            Self::Scheme(s) => write!(f, "scheme `{}` is not http or https", safe(s)),
            Self::Spelling(e) => write!(f, "{}", safe(e)),
            Self::NotGranted(h) => write!(f, "`{}` is not granted `http.outgoing`", safe(h)),
            Self::Unresolved(h) => write!(f, "`{}` did not resolve", safe(h)),
            Self::Internal(h, ip) => write!(
                f,
                "`{}` resolves only to internal addresses ({ip}); only a grant of the address itself reaches one",
                safe(h)
            ),
        }
    }
}

impl Refusal {
    fn code(&self) -> Error {
        match self {
            Self::Unresolved(_) => Error::DestinationNotFound,
            Self::Internal(..) => Error::DestinationIpProhibited,
            _ => Error::HttpRequestDenied,
        }
    }
}

/// Check `uri` against `allowed` (canonical pairs): the authority as written, canonical,
/// granted. Resolution comes after.
pub fn check_target(uri: &http::Uri, allowed: &[String]) -> Result<Target, Refusal> {
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) => return Err(Refusal::Scheme(s.as_str().to_owned())),
        None => return Err(Refusal::Scheme(String::new())),
    };
    let authority = match uri.authority() {
        Some(a) if !a.as_str().is_empty() && !a.host().is_empty() => a,
        _ => return Err(Refusal::NoAuthority),
    };
    if authority.as_str().contains('@') {
        return Err(Refusal::UserInfo);
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if authority.port().is_some() && authority.port_u16().is_none() {
        return Err(Refusal::Spelling(format!(
            "`{}` has no valid port",
            authority.as_str()
        )));
    }
    let host = authority.host();
    let canonical =
        crate::policy::canonical_host_port(&format!("{host}:{port}")).map_err(Refusal::Spelling)?;
    if !allowed.contains(&canonical) {
        return Err(Refusal::NotGranted(canonical));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let literal = bare.parse::<IpAddr>().ok();
    let host = canonical
        .rsplit_once(':')
        .map_or(canonical.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Target {
        canonical,
        host,
        port,
        literal,
        tls,
    })
}

/// Whether `ip` is an address a granted *name* may reach: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast or documentation; an IPv4-mapped IPv6
/// address is judged as the IPv4 address it maps.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments().first().copied().unwrap_or(0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments().get(1).copied() == Some(0x0db8)
                || first == 0x0064)
        }
    }
}

struct Hooks {
    gate: Arc<Gate>,
    counts: Arc<Counts>,
}

type Sent = Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
)>;
type Result<T, E = Error> = std::result::Result<T, E>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        let gate = self.gate.clone();
        let counts = self.counts.clone();
        Box::new(async move {
            let destination = match gate.destination(request.uri()).await {
                Ok(d) => d,
                Err(refusal) => {
                    counts.denied.fetch_add(1, Ordering::Relaxed);
                    gate.metrics.outbound_denied.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant = %gate.tenant, "outgoing request refused: {refusal}");
                    return Err(refusal.code());
                }
            };
            counts.allowed.fetch_add(1, Ordering::Relaxed);
            gate.metrics
                .outbound_allowed
                .fetch_add(1, Ordering::Relaxed);
            send(&gate, destination, request, options).await
        })
    }
}

/// Connect to the first address that answers, speak TLS when asked, and send the request as
/// origin-form (path and query only).
async fn send(
    gate: &Gate,
    destination: Destination,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Sent {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .map_or(limits::CONNECT_TIMEOUT, |t| t.min(limits::CONNECT_TIMEOUT));
    let first_byte = options
        .and_then(|o| o.first_byte_timeout)
        .map_or(limits::FIRST_BYTE_TIMEOUT, |t| {
            t.min(limits::FIRST_BYTE_TIMEOUT)
        });
    let mut stream = None;
    for address in &destination.addresses {
        if let Ok(Ok(s)) =
            tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(address)).await
        {
            stream = Some(s);
            break;
        }
    }
    let stream = stream.ok_or(Error::ConnectionRefused)?;
    let _ = stream.set_nodelay(true);
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if destination.tls {
        let name = rustls::pki_types::ServerName::try_from(destination.name.clone())
            .map_err(|_| Error::TlsCertificateError)?;
        let connector = tokio_rustls::TlsConnector::from(gate.tls.clone());
        let tls = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(|_| Error::TlsCertificateError)?;
        exchange(tls, request, connect_timeout, first_byte).await
    } else {
        exchange(stream, request, connect_timeout, first_byte).await
    }
}

async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte: Duration,
) -> Sent
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    use http_body_util::BodyExt as _;
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(|_| Error::ConnectionTerminated)?;
    // The connection is driven by its own task, ended when the response body is dropped.
    let driving = tokio::spawn(connection);
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match driving.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, io))
}

/// The TLS configuration for outgoing requests: the webpki roots, and `extra` (PEM
/// certificates the operator trusts as well).
pub fn tls_config(
    extra: Option<&std::path::Path>,
) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("`{}`: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("`{}`: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, allowed: &[&str]) -> Result<Target, Refusal> {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        check_target(&uri.parse::<http::Uri>().unwrap(), &allowed)
    }

    #[test]
    fn a_granted_pair_as_written_passes_and_canonicalises() {
        let t = check("http://API.Example.com.:8080/x", &["api.example.com:8080"]).unwrap();
        assert_eq!(t.canonical, "api.example.com:8080");
        assert_eq!(t.host, "api.example.com");
        assert!(!t.tls);
        let t = check("https://127.0.0.1/x", &["127.0.0.1:443"]).unwrap();
        assert_eq!(t.literal, Some(IpAddr::from([127, 0, 0, 1])));
        assert!(t.tls);
    }

    /// CVE-2024-32980: a request without an authority is refused, never completed from
    /// anything else.
    #[test]
    fn cve_2024_32980_a_request_without_authority_is_refused() {
        assert_eq!(
            check("/path", &["127.0.0.1:80"]),
            Err(Refusal::Scheme(String::new()))
        );
        let uri = http::Uri::builder()
            .scheme("http")
            .path_and_query("/x")
            .build();
        // `http` cannot build a URI with a scheme and no authority: either way refused.
        if let Ok(uri) = uri {
            assert!(check_target(&uri, &["127.0.0.1:80".into()]).is_err());
        }
    }

    #[test]
    fn legacy_numeric_spellings_and_user_info_are_refused_even_for_a_granted_address() {
        let granted = ["127.0.0.1:8080"];
        for uri in [
            "http://2130706433:8080/",
            "http://0x7f000001:8080/",
            "http://0177.1:8080/",
            "http://0177.0.0.1:8080/",
            "http://127.1:8080/",
        ] {
            assert!(
                matches!(check(uri, &granted), Err(Refusal::Spelling(_))),
                "{uri}: {:?}",
                check(uri, &granted)
            );
        }
        assert_eq!(
            check("http://user@127.0.0.1:8080/", &granted),
            Err(Refusal::UserInfo)
        );
    }

    #[test]
    fn a_name_is_not_its_address() {
        assert_eq!(
            check("http://localhost:8080/", &["127.0.0.1:8080"]),
            Err(Refusal::NotGranted("localhost:8080".into()))
        );
        assert_eq!(
            check("http://127.0.0.1:8081/", &["127.0.0.1:8080"]),
            Err(Refusal::NotGranted("127.0.0.1:8081".into()))
        );
        assert!(matches!(
            check("ftp://127.0.0.1:8080/", &["127.0.0.1:8080"]),
            Err(Refusal::Scheme(_))
        ));
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    /// A granted name that resolves to loopback is refused before any connection.
    #[tokio::test]
    async fn a_granted_name_resolving_to_loopback_is_refused() {
        let gate = Gate::new(
            "t",
            vec!["localhost:9".into()],
            tls_config(None).unwrap(),
            Arc::new(TenantMetrics::default()),
        );
        let refused = gate
            .destination(&"http://localhost:9/".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(refused, Refusal::Internal(..) | Refusal::Unresolved(_)),
            "{refused:?}"
        );
    }
}
