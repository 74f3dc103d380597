//! `HOST:PORT` in its one canonical spelling: what policies are asked about, what the audit
//! log records and what the socket check resolves.
//!
//! Policies compare text, but a destination has many spellings. The C library reads any host
//! whose last label is a number as an IPv4 address in one of `inet_aton`'s legacy forms:
//! `2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`, `169.254.43518` and `169.254.169.254`
//! are one address. Names are case-insensitive and may end in a dot; IPv6 addresses have many
//! textual forms, and an IPv4-mapped one (`::ffff:a.b.c.d`) connects to an IPv4 host. So a
//! host is asked for in exactly one form, and a spelling that has none is refused:
//!
//! - an IPv4 address as four decimal octets without leading zeros (`169.254.169.254`); any
//!   other host whose last label is numeric (all digits, or `0x` and hex digits) is refused;
//! - an IPv6 address in brackets, in RFC 5952's form (lowercase, zeros compressed:
//!   `[2001:db8::1]`); an IPv4-mapped address becomes the IPv4 address it maps; zone ids are
//!   refused;
//! - a name as lowercase ASCII labels of letters, digits and inner hyphens, without the
//!   trailing dot; other characters are refused (an internationalised name is given in its
//!   punycode form, `xn--…`);
//! - the port in decimal, 1–65535, without a sign or leading zeros.
//!
//! A name stays a name: a policy on an address does not cover names that resolve to it.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest host name, in bytes (RFC 1035, without the trailing dot).
const MAX_NAME_BYTES: usize = 253;
/// Longest label of a name, in bytes (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;

/// `text` (`HOST:PORT`) in its canonical form, or why it has none (see the module docs).
pub fn canonical_host_port(text: &str) -> Result<String, String> {
    let bad = |why: String| format!("`{text}` is not `HOST:PORT`: {why}");
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (address, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("no `]` after the IPv6 address".into()))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("no `:PORT` after the IPv6 address".into()))?;
            (ipv6(address).map_err(bad)?, port)
        }
        None => {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port".into()))?;
            if host.contains(':') {
                return Err(bad(
                    "an IPv6 address is written in brackets, `[ADDRESS]:PORT`".into(),
                ));
            }
            (name_or_ipv4(host).map_err(bad)?, port)
        }
    };
    let port = canonical_port(port).map_err(bad)?;
    Ok(format!("{host}:{port}"))
}

/// The port: decimal digits, 1–65535, no sign, no leading zero.
fn canonical_port(port: &str) -> Result<u16, String> {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(p) if digits && p > 0 && !port.starts_with('0') => Ok(p),
        _ => Err(format!(
            "the port `{port}` is not 1–65535 in decimal without leading zeros"
        )),
    }
}

/// The bracketed address in canonical form: `[…]`, or the IPv4 address a mapped one maps.
fn ipv6(address: &str) -> Result<String, String> {
    if address.contains('%') {
        return Err(format!(
            "`[{address}]` has a zone id; zone ids are not accepted"
        ));
    }
    let parsed: Ipv6Addr = address
        .parse()
        .map_err(|_| format!("`[{address}]` is not an IPv6 address"))?;
    Ok(match parsed.to_ipv4_mapped() {
        // It connects to that IPv4 host: it is asked for as that host.
        Some(v4) => v4.to_string(),
        None => format!("[{parsed}]"),
    })
}

/// A name, lowercased and without its trailing dot, or a canonical IPv4 address.
fn name_or_ipv4(host: &str) -> Result<String, String> {
    if !host.is_ascii() {
        return Err(format!(
            "`{host}` is not ASCII; give an internationalised name in its punycode form \
             (`xn--…`)"
        ));
    }
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("no host".into());
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let numeric = (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || last
            .strip_prefix("0x")
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return match name.parse::<Ipv4Addr>() {
            Ok(address) if address.to_string() == name => Ok(name.to_owned()),
            _ => Err(match legacy_ipv4(name) {
                Some(address) => format!(
                    "`{host}` would be read as the IP address `{address}`; write an IPv4 \
                     address as four decimal octets without leading zeros"
                ),
                None => format!(
                    "`{host}` ends in a number, so it would be read as an IP address, and it \
                     is not four decimal octets without leading zeros"
                ),
            }),
        };
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_BYTES
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > MAX_NAME_BYTES || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{host}` is not a host name (labels of letters, digits and inner hyphens) or an \
             IP address"
        ));
    }
    Ok(name.to_owned())
}

/// The address `inet_aton` reads `host` as, if it reads it as one: one to four parts, each
/// decimal, octal (a leading `0`) or hexadecimal (`0x`), the last filling the remaining bytes.
/// Used only to say which address a refused spelling stands for.
fn legacy_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = host
        .split('.')
        .map(|part| {
            if let Some(hex) = part.strip_prefix("0x") {
                if hex.is_empty() {
                    return Some(0);
                }
                u32::from_str_radix(hex, 16).ok()
            } else if part.len() > 1 && part.starts_with('0') {
                u32::from_str_radix(part, 8).ok()
            } else {
                part.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&p| p > 255) {
        return None;
    }
    let room = 8 * (4 - u32::try_from(leading.len()).ok()?);
    if room < 32 && *last >> room != 0 {
        return None;
    }
    let high = leading
        .iter()
        .zip([24, 16, 8])
        .fold(0_u32, |acc, (&p, shift)| acc | (p << shift));
    Some(Ipv4Addr::from(high | last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form of one destination canonicalises to one text, or is refused.
    #[test]
    fn hosts_are_canonical_or_refused() {
        let canonical = [
            ("169.254.169.254:80", "169.254.169.254:80"),
            ("0.0.0.0:1", "0.0.0.0:1"),
            ("255.255.255.255:65535", "255.255.255.255:65535"),
            ("api.example.com:443", "api.example.com:443"),
            ("API.Example.COM:443", "api.example.com:443"),
            ("LOCALHOST.:22", "localhost:22"),
            ("localhost:22", "localhost:22"),
            ("xn--bcher-kva.example:443", "xn--bcher-kva.example:443"),
            ("a-b.c1:8080", "a-b.c1:8080"),
            ("1.2.3.4.example:80", "1.2.3.4.example:80"),
            ("0x1.example:80", "0x1.example:80"),
            ("cafe:80", "cafe:80"),
            ("example.1e5:80", "example.1e5:80"),
            ("[::1]:443", "[::1]:443"),
            ("[2001:DB8:0:0:0:0:0:1]:443", "[2001:db8::1]:443"),
            ("[2001:db8:0000::0001]:443", "[2001:db8::1]:443"),
            ("[::ffff:169.254.169.254]:80", "169.254.169.254:80"),
            ("[::FFFF:a9fe:a9fe]:80", "169.254.169.254:80"),
            ("[0:0:0:0:0:ffff:7f00:1]:22", "127.0.0.1:22"),
            // Not mapped: an IPv6 address (IPv4-compatible addresses are not routed to IPv4).
            ("[::169.254.169.254]:80", "[::a9fe:a9fe]:80"),
            ("[64:ff9b::a9fe:a9fe]:80", "[64:ff9b::a9fe:a9fe]:80"),
        ];
        for (text, want) in canonical {
            assert_eq!(canonical_host_port(text).as_deref(), Ok(want), "{text}");
            // Canonical forms are fixed points.
            assert_eq!(canonical_host_port(want).as_deref(), Ok(want), "{want}");
        }
        let refused = [
            // inet_aton's legacy spellings of 169.254.169.254, 127.0.0.1 and 1.2.3.4.
            ("2852039166:80", "read as the IP address `169.254.169.254`"),
            ("0xa9fea9fe:80", "read as the IP address `169.254.169.254`"),
            ("0XA9FEA9FE:80", "read as the IP address `169.254.169.254`"),
            (
                "0251.0376.0251.0376:80",
                "read as the IP address `169.254.169.254`",
            ),
            (
                "169.254.43518:80",
                "read as the IP address `169.254.169.254`",
            ),
            (
                "169.0xfe.0xa9fe:80",
                "read as the IP address `169.254.169.254`",
            ),
            ("127.1:22", "read as the IP address `127.0.0.1`"),
            ("1.2.3.04:80", "read as the IP address `1.2.3.4`"),
            ("2852039166.:80", "read as the IP address `169.254.169.254`"),
            ("0x:80", "read as the IP address `0.0.0.0`"),
            // Numeric last labels that are no address at all.
            ("1.2.3.4.5:80", "ends in a number"),
            ("256.1.1.1:80", "ends in a number"),
            ("example.123:80", "ends in a number"),
            ("example.0x1f:80", "ends in a number"),
            ("08.1.1.1:80", "ends in a number"),
            // Names.
            ("bücher.example:443", "punycode"),
            ("under_score.example:80", "not a host name"),
            ("-lead.example:80", "not a host name"),
            ("trail-.example:80", "not a host name"),
            ("a..b:80", "not a host name"),
            ("localhost..:80", "not a host name"),
            (".:80", "no host"),
            (":80", "no host"),
            // IPv6.
            ("[fe80::1%eth0]:80", "zone id"),
            ("[fe80::1%25eth0]:80", "zone id"),
            ("[::1:80", "no `]`"),
            ("[::1]80", "no `:PORT`"),
            ("[::1]", "no `:PORT`"),
            ("[1.2.3.4]:80", "not an IPv6 address"),
            ("::1:80", "in brackets"),
            // Ports.
            ("localhost", "no port"),
            ("localhost:", "the port ``"),
            ("localhost:0", "the port `0`"),
            ("localhost:022", "the port `022`"),
            ("localhost:+22", "the port `+22`"),
            ("localhost:65536", "the port `65536`"),
            ("localhost:http", "the port `http`"),
        ];
        for (text, why) in refused {
            let error = canonical_host_port(text).expect_err(text);
            assert!(
                error.starts_with(&format!("`{text}` is not `HOST:PORT`: ")) && error.contains(why),
                "{text}: {error}"
            );
        }
        let long = format!("{}.example:80", "a".repeat(64));
        assert!(canonical_host_port(&long).is_err());
        let labels = vec!["a".repeat(63); 4].join(".");
        let longest = format!("{}:80", &labels[..253]);
        assert!(canonical_host_port(&longest).is_ok(), "{longest}");
        let too_long = format!("{}.a:80", &labels[..252]);
        assert!(canonical_host_port(&too_long).is_err());
    }

    /// The address a refused spelling is said to stand for is the one `inet_aton` reads.
    #[test]
    fn legacy_spellings_are_read_as_inet_aton_reads_them() {
        for (text, address) in [
            ("2852039166", Some([169, 254, 169, 254])),
            ("0xa9fea9fe", Some([169, 254, 169, 254])),
            ("0251.0376.0251.0376", Some([169, 254, 169, 254])),
            ("169.254.43518", Some([169, 254, 169, 254])),
            ("169.16689662", Some([169, 254, 169, 254])),
            ("127.1", Some([127, 0, 0, 1])),
            ("0", Some([0, 0, 0, 0])),
            ("4294967295", Some([255, 255, 255, 255])),
            ("4294967296", None),
            ("1.256.1", None),
            ("1.2.65536", None),
            ("1.2.3.256", None),
            ("08", None),
            ("1.2.3.4.5", None),
            ("1..2", None),
        ] {
            assert_eq!(legacy_ipv4(text), address.map(Ipv4Addr::from), "{text}");
        }
    }
}
