//! What a user may name: an artifact in a registry, or in an OCI image-layout directory.
//!
//! ```text
//! registry.example.com/team/plugin:1.2.0
//! registry.example.com/team/plugin@sha256:<hex>
//! localhost:5000/plugin:dev
//! oci-layout:./path/to/layout:tag
//! oci-layout:./path/to/layout@sha256:<hex>
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;

/// The prefix that names an OCI image-layout directory instead of a registry.
pub const LAYOUT_PREFIX: &str = "oci-layout:";

/// The tag used when a layout reference names none.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed artifact reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// An artifact in an OCI distribution registry.
    Registry(RegistryRef),
    /// An artifact in an OCI image-layout directory on disk.
    Layout(LayoutRef),
}

/// A tag or a digest: what selects one manifest in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A mutable tag; resolved once to a digest.
    Tag(String),
    /// An immutable digest.
    Digest(Digest),
}

/// An artifact in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    registry: String,
    repository: String,
    selector: Selector,
}

/// An artifact in an OCI image-layout directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRef {
    path: PathBuf,
    selector: Selector,
}

impl Reference {
    /// The tag or digest this reference selects.
    pub fn selector(&self) -> &Selector {
        match self {
            Self::Registry(r) => &r.selector,
            Self::Layout(l) => &l.selector,
        }
    }
}

impl RegistryRef {
    /// A reference from parts. `registry` is `host[:port]`.
    pub fn new(registry: &str, repository: &str, selector: Selector) -> Result<Self, Error> {
        let text = match &selector {
            Selector::Tag(t) => format!("{registry}/{repository}:{t}"),
            Selector::Digest(d) => format!("{registry}/{repository}@{d}"),
        };
        text.parse()
    }

    /// The registry as written (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to talk to (`index.docker.io` for Docker Hub).
    pub fn resolve_registry(&self) -> &str {
        if self.registry == "docker.io" {
            "index.docker.io"
        } else {
            &self.registry
        }
    }

    /// The repository path, e.g. `team/plugin`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag or digest.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The same repository, selecting `selector`.
    pub fn with_selector(&self, selector: Selector) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            selector,
        }
    }

    /// True when the registry host is a loopback address or `localhost`, for which plain HTTP
    /// is allowed.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match &self.selector {
            Selector::Tag(t) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            Selector::Digest(d) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.to_string(),
            ),
        }
    }
}

/// True for `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

impl LayoutRef {
    /// The layout directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tag or digest.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The same layout, selecting `selector`.
    pub fn with_selector(&self, selector: Selector) -> Self {
        Self {
            path: self.path.clone(),
            selector,
        }
    }

    /// The same layout with its directory named by its canonical absolute path (symbolic
    /// links, `.`, `..` and repeated separators resolved), so that every spelling of one
    /// directory names one layout: for reading it and for the facts policies see.
    pub fn canonical(&self) -> Result<Self, Error> {
        let path = std::fs::canonicalize(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    what: format!("layout directory `{}`", self.path.display()),
                }
            } else {
                Error::io(&self.path, e)
            }
        })?;
        Ok(Self {
            path,
            selector: self.selector.clone(),
        })
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(rest) = s.strip_prefix(LAYOUT_PREFIX) {
            return parse_layout(s, rest).map(Self::Layout);
        }
        s.parse().map(Self::Registry)
    }
}

impl FromStr for RegistryRef {
    type Err = Error;

    /// The distribution reference grammar (`[domain/]path[:tag][@digest]`), with Docker Hub
    /// normalisation: a first component without `.` or `:` that is not `localhost` is a path
    /// on `docker.io`, and a single-component path there gets `library/`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidReference {
            input: truncate_for_message(s),
            reason: reason.to_owned(),
        };
        if s.starts_with(LAYOUT_PREFIX) {
            return Err(invalid("a registry reference is required here"));
        }
        if s.contains("://") {
            return Err(invalid("write the registry without a URL scheme"));
        }
        if s.len() > MAX_REFERENCE_LEN {
            return Err(invalid("longer than 4096 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest.get(last_slash..).and_then(|tail| tail.rfind(':')) {
            Some(i) => {
                let at = last_slash + i;
                (
                    rest.get(..at).unwrap_or_default(),
                    Some(rest.get(at + 1..).unwrap_or_default()),
                )
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(invalid(
                "a tag is 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`",
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_domain(first) {
                    return Err(invalid("the registry is not a valid `host[:port]`"));
                }
                (first.to_owned(), path.to_owned())
            }
            Some(_) => (DOCKER_HUB.to_owned(), name.to_owned()),
            None => (DOCKER_HUB.to_owned(), format!("library/{name}")),
        };
        if repository.len() > MAX_REPOSITORY_LEN {
            return Err(invalid("the repository name is longer than 255 characters"));
        }
        if !repository.split('/').all(valid_path_component) {
            return Err(invalid(
                "a repository is lowercase `[a-z0-9]` components separated by `/`, each joined by `.`, `_`, `__` or dashes",
            ));
        }
        let selector = match (digest, tag) {
            (Some(d), _) => Selector::Digest(d),
            (None, Some(t)) => Selector::Tag(t.to_owned()),
            (None, None) => Selector::Tag(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            selector,
        })
    }
}

/// Docker Hub's registry name.
const DOCKER_HUB: &str = "docker.io";
/// Longest reference accepted.
const MAX_REFERENCE_LEN: usize = 4096;
/// Longest repository name (the distribution spec's limit).
const MAX_REPOSITORY_LEN: usize = 255;

/// `[a-z0-9]+` joined by `.`, `_`, `__` or one or more `-`.
fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Check each run of separators between alphanumerics.
    let mut i = 0;
    while i < bytes.len() {
        let Some(&b) = bytes.get(i) else { break };
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(|&b| !alnum(b)) {
            i += 1;
        }
        let run = c.get(start..i).unwrap_or_default();
        let ok = matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]`: DNS labels, an IPv4 address, or a bracketed IPv6 address; port digits.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.is_none_or(|host| {
        !host.is_empty()
            && host.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                    && b.first().is_some_and(u8::is_ascii_alphanumeric)
                    && b.last().is_some_and(u8::is_ascii_alphanumeric)
            })
    })
}

fn parse_layout(input: &str, rest: &str) -> Result<LayoutRef, Error> {
    let invalid = |reason: &str| Error::InvalidReference {
        input: truncate_for_message(input),
        reason: reason.to_owned(),
    };
    let (path, selector) = if let Some((path, digest)) = rest.rsplit_once('@') {
        (path, Selector::Digest(digest.parse()?))
    } else {
        // `PATH:tag`: the tag is after the last colon, unless that colon is part of the path
        // (a tag never contains `/`).
        match rest.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, Selector::Tag(tag.to_owned())),
            _ => (rest, Selector::Tag(DEFAULT_TAG.to_owned())),
        }
    };
    if path.is_empty() {
        return Err(invalid("the layout directory is missing"));
    }
    if let Selector::Tag(tag) = &selector
        && !valid_tag(tag)
    {
        return Err(invalid(
            "a tag is 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`",
        ));
    }
    Ok(LayoutRef {
        path: PathBuf::from(path),
        selector,
    })
}

/// The OCI distribution tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => write!(f, ":{t}"),
            Self::Digest(d) => write!(f, "@{d}"),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.selector)
    }
}

impl fmt::Display for LayoutRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{LAYOUT_PREFIX}{}{}", self.path.display(), self.selector)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(r) => r.fmt(f),
            Self::Layout(l) => l.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn registry_references() {
        let r: RegistryRef = "localhost:5000/team/plugin:1.2.0".parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/plugin");
        assert_eq!(r.selector(), &Selector::Tag("1.2.0".into()));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "localhost:5000/team/plugin:1.2.0");

        let r: RegistryRef = format!("ghcr.io/acme/p@sha256:{HEX}").parse().unwrap();
        assert!(matches!(r.selector(), Selector::Digest(d) if d.hex() == HEX));
        assert!(!r.is_loopback());

        // A tag and a digest: the digest wins; the tag is only a label.
        let r: RegistryRef = format!("ghcr.io/acme/p:v1@sha256:{HEX}").parse().unwrap();
        assert!(matches!(r.selector(), Selector::Digest(_)));

        let r: RegistryRef = "127.0.0.1:5000/p".parse().unwrap();
        assert_eq!(r.selector(), &Selector::Tag("latest".into()));
        assert!(r.is_loopback());

        let r: RegistryRef = "docker.io/library/hello".parse().unwrap();
        assert_eq!(r.resolve_registry(), "index.docker.io");

        // Docker Hub normalisation.
        let r: RegistryRef = "hello".parse().unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("docker.io", "library/hello")
        );
        let r: RegistryRef = "acme/hello:1".parse().unwrap();
        assert_eq!((r.registry(), r.repository()), ("docker.io", "acme/hello"));

        // Separators the grammar allows; ports; IPv6.
        let r: RegistryRef = "reg.example:443/a.b/c__d/e---f/g_h:T_1.0-x"
            .parse()
            .unwrap();
        assert_eq!(r.repository(), "a.b/c__d/e---f/g_h");
        assert_eq!(r.selector(), &Selector::Tag("T_1.0-x".into()));
        let r: RegistryRef = "[::1]:5000/p:v".parse().unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        assert!(r.is_loopback());
        let r: RegistryRef = "localhost/p".parse().unwrap();
        assert_eq!(r.registry(), "localhost");
    }

    #[test]
    fn refused_registry_references() {
        for bad in [
            "https://ghcr.io/acme/p:v1",
            "ghcr.io/acme/p@sha512:abcd",
            "ghcr.io/acme/P:v1",
            "",
            "ghcr.io/",
            "ghcr.io//p",
            "ghcr.io/a/-p",
            "ghcr.io/a/p-",
            "ghcr.io/a/p..q",
            "ghcr.io/a/p_-q",
            "ghcr.io/a/p:",
            "ghcr.io/a/p:.x",
            "ghcr.io:/p",
            "ghcr.io:99999999/p",
            "-bad.io/p",
            "[::1/p",
            "[zz::1]:5000/p",
            "p@",
        ] {
            assert!(bad.parse::<RegistryRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_detection() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:5000",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.evil.com:5000",
            "[::2]:5000",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn layout_references() {
        let r: Reference = "oci-layout:./examples/hello:v1".parse().unwrap();
        let Reference::Layout(l) = r else { panic!() };
        assert_eq!(l.path(), Path::new("./examples/hello"));
        assert_eq!(l.selector(), &Selector::Tag("v1".into()));

        let r: Reference = "oci-layout:/tmp/x".parse().unwrap();
        let Reference::Layout(l) = r else { panic!() };
        assert_eq!(l.path(), Path::new("/tmp/x"));
        assert_eq!(l.selector(), &Selector::Tag("latest".into()));

        let r: Reference = format!("oci-layout:/tmp/x@sha256:{HEX}").parse().unwrap();
        let Reference::Layout(l) = r else { panic!() };
        assert_eq!(l.path(), Path::new("/tmp/x"));
        assert!(matches!(l.selector(), Selector::Digest(_)));

        assert!("oci-layout:".parse::<Reference>().is_err());
        assert!("oci-layout::tag".parse::<Reference>().is_err());
        assert!("oci-layout:/tmp/x:-bad".parse::<Reference>().is_err());
        assert!(
            "oci-layout:/tmp/x@sha256:nothex"
                .parse::<Reference>()
                .is_err()
        );
    }

    #[test]
    fn layout_directories_are_canonical_whatever_their_spelling() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("layouts").join("evil");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&dir, top.path().join("link")).unwrap();
        let canonical = std::fs::canonicalize(&dir).unwrap();
        let base = top.path().display().to_string();
        for spelling in [
            format!("{base}/layouts/evil"),
            format!("{base}/layouts/./evil"),
            format!("{base}//layouts//evil/"),
            format!("{base}/layouts/../layouts/evil"),
            format!("{base}/link"),
        ] {
            let r: Reference = format!("oci-layout:{spelling}:v1").parse().unwrap();
            let Reference::Layout(l) = r else { panic!() };
            let l = l.canonical().unwrap();
            assert_eq!(l.path(), canonical, "{spelling}");
            assert_eq!(l.selector(), &Selector::Tag("v1".into()));
        }
        let missing: Reference = format!("oci-layout:{base}/missing").parse().unwrap();
        let Reference::Layout(l) = missing else {
            panic!()
        };
        assert!(matches!(l.canonical(), Err(Error::NotFound { .. })));
    }

    #[test]
    fn printing_and_parsing_round_trips() {
        for text in [
            "hello",
            "docker.io/library/hello",
            "localhost:5000/a/b/c:v1",
            &format!("ghcr.io/acme/p:v1@sha256:{HEX}"),
            "oci-layout:/tmp/x",
            "oci-layout:/a:b/c",
            "oci-layout:rel/dir:tag_1.2-x",
            &format!("oci-layout:/tmp/x@sha256:{HEX}"),
        ] {
            let parsed: Reference = text.parse().unwrap();
            let again: Reference = parsed.to_string().parse().unwrap();
            assert_eq!(again, parsed, "{text}");
        }
    }
}
