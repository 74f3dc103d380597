//! The sandbox's capability boundary, in one place: the WASI context a guest gets, built from
//! its [`Handles`] (which only a policy [`Grant`] makes) and from nothing else — directories,
//! environment variables, sockets — with everything else of the host switched off.

use std::collections::HashSet;
use std::net::SocketAddr;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{RunLimits, SandboxError, limits};
use crate::policy::Grant;

/// The handles a guest is given. Only a [`Grant`] makes any; [`Handles::none`] gives nothing.
#[derive(Clone, Debug, Default)]
pub struct Handles {
    /// Directories: held open since they were asked for, where the guest sees them, writable.
    dirs: Vec<(crate::policy::HostDir, String, bool)>,
    env: Vec<(String, crate::policy::EnvValue)>,
    /// Granted `host:port` pairs (components only: WASI preview 1 has no sockets).
    pub(super) net: Vec<String>,
}

impl Handles {
    /// No directory, no environment.
    pub fn none() -> Self {
        Self::default()
    }

    /// Exactly what `grant` allows.
    pub fn of(grant: &Grant) -> Self {
        Self {
            dirs: grant
                .dirs()
                .iter()
                .map(|d| (d.dir.clone(), d.guest.clone(), d.writable))
                .collect(),
            env: grant.env().to_vec(),
            net: grant.net().to_vec(),
        }
    }
}

/// The socket addresses the granted `host:port` pairs stand for: an IP literal itself, a name
/// every address it resolves to now. A pair that does not resolve grants nothing.
fn granted_addresses(net: &[String]) -> HashSet<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    net.iter()
        .filter_map(|pair| pair.to_socket_addrs().ok())
        .flatten()
        .collect()
}

/// Whether a component may use `addr` for `how`: only a TCP connection to a granted address,
/// and the implicit bind to the wildcard address that a connection makes.
fn socket_allowed(granted: &HashSet<SocketAddr>, addr: SocketAddr, how: SocketAddrUse) -> bool {
    match how {
        SocketAddrUse::TcpConnect => granted.contains(&addr),
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        _ => false,
    }
}

/// A guest's WASI context. Least privilege: `WasiCtxBuilder::new()` has no env, no preopens,
/// stdin closed; networking is switched off outright; the arguments, the capped output pipes
/// and the granted handles are added one by one.
pub(super) fn wasi_context(
    args: &[String],
    limits: &RunLimits,
    handles: &Handles,
) -> Result<WasiCtxBuilder, SandboxError> {
    // INVARIANT (no ambient authority): the context starts empty; only the arguments, the
    // grant's handles and (by the caller) the output are added.
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(args)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(limits::MAX_RANDOM_BYTES.min(limits.memory_bytes));
    for (name, value) in &handles.env {
        builder.env(name, value.expose());
    }
    for (dir, guest, writable) in &handles.dirs {
        let perms = if *writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        // INVARIANT (one object): the directory decided is the directory given. WASI opens a
        // preopen by path; the path given is the held descriptor's, which the kernel resolves
        // to that directory, not to whatever its name leads to now.
        builder
            .preopened_dir(dir.descriptor_path(), guest, perms)
            .map_err(|e| SandboxError::Load(format!("cannot give `{guest}`: {e:#}")))?;
    }
    Ok(builder)
}

/// Let a component open TCP connections to the granted `host:port` pairs, and to nothing else
/// (nothing at all when none is granted).
pub(super) fn allow_granted_net(builder: &mut WasiCtxBuilder, net: &[String]) {
    if !net.is_empty() {
        // Only TCP connections to the granted pairs. A granted name is resolved here, and
        // the check applies to the address the guest finally connects to; the guest may
        // look names up only when a granted host is a name.
        let granted = granted_addresses(net);
        let names = net.iter().any(|pair| {
            let host = pair.rsplit_once(':').map_or(pair.as_str(), |(h, _)| h);
            host.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_err()
        });
        builder
            .allow_tcp(true)
            .allow_ip_name_lookup(names)
            .socket_addr_check(move |addr, how| {
                let allowed = socket_allowed(&granted, addr, how);
                Box::pin(async move { allowed })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Components may connect only to granted addresses, and bind only implicitly (the
    /// wildcard address a connection binds to); no listening, no UDP.
    #[test]
    fn the_socket_check_allows_exactly_the_granted_pairs() {
        let granted = granted_addresses(&["127.0.0.1:8443".into(), "[::1]:443".into()]);
        assert_eq!(granted.len(), 2);
        use SocketAddrUse::{TcpAccept, TcpBind, TcpConnect, TcpListen, UdpBind, UdpSend};
        for (addr, how, allowed) in [
            ("127.0.0.1:8443", TcpConnect, true),
            ("[::1]:443", TcpConnect, true),
            ("127.0.0.1:8444", TcpConnect, false),
            ("127.0.0.2:8443", TcpConnect, false),
            ("0.0.0.0:0", TcpBind, true),
            ("0.0.0.0:8443", TcpBind, false),
            ("127.0.0.1:8443", TcpBind, false),
            ("127.0.0.1:8443", TcpListen, false),
            ("127.0.0.1:8443", TcpAccept, false),
            ("127.0.0.1:8443", UdpBind, false),
            ("127.0.0.1:8443", UdpSend, false),
        ] {
            let at = addr.parse::<SocketAddr>().unwrap();
            assert_eq!(socket_allowed(&granted, at, how), allowed, "{addr} {how:?}");
        }
        // A name stands for what it resolves to; one that does not resolve grants nothing.
        let local = granted_addresses(&["localhost:80".into()]);
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert!(granted_addresses(&["no-such-host.invalid:80".into()]).is_empty());
    }
}
