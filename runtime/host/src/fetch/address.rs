//! Which addresses outbound requests may reach, and how a host written in a
//! URL becomes an address to check.
//!
//! The check is made on the exact address the host connects to (see
//! connect.rs), after its own DNS resolution: a name that resolves to a
//! private address is refused as if the guest had written that address.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The private ranges an operator opened to outbound requests
/// (`[outbound] allow_private` in node.toml). Everything else that is not
/// public is refused.
#[derive(Clone, Debug, Default)]
pub struct PrivateAllowance {
    ranges: Vec<IpNet>,
}

impl PrivateAllowance {
    /// Parses CIDR ranges (`"10.1.0.0/16"`) or single addresses.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Self, String> {
        let mut parsed = Vec::with_capacity(ranges.len());
        for range in ranges {
            let range = range.as_ref();
            let net = match range.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match range.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{range:?} is not an address range; write it as \"10.1.0.0/16\", \"127.0.0.1\" or \"fd00::/8\""
                        ));
                    }
                },
            };
            parsed.push(net.trunc());
        }
        Ok(Self { ranges: parsed })
    }

    /// Adds `other`'s ranges to these.
    pub fn extend(&mut self, other: Self) {
        self.ranges.extend(other.ranges);
    }

    /// Whether outbound requests may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        is_public(ip) || self.ranges.iter().any(|range| range.contains(&ip))
    }
}

/// Whether `ip` is a public unicast address: not loopback, private
/// (RFC 1918, unique-local), link-local (which includes cloud metadata at
/// 169.254.169.254), CGNAT, multicast, broadcast, unspecified, documentation
/// or reserved. IPv4-mapped and -compatible IPv6 addresses are judged as the
/// IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", including 0.0.0.0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || ip.is_multicast()
        || a >= 240) // reserved, and broadcast 255.255.255.255
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (::a.b.c.d, deprecated) and the loopback and
        // unspecified addresses, which `to_ipv4` also maps.
        return !ip.is_loopback() && !ip.is_unspecified() && is_public_v4(v4);
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    !(ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

/// The host of a URL as a name to resolve or an address, normalised: ASCII
/// lowercase, no trailing dot, no IPv6 brackets, and IPv4 literals in any
/// spelling a resolver would accept (`2130706433`, `0x7f.1`, `0177.0.0.1`,
/// `127.1`) turned into the address they mean, so that neither the
/// allowlist nor the private-range check can be passed by spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name.
    Name(String),
    /// An IP address literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses the host part of an authority (without the port).
    pub fn parse(host: &str) -> Result<Self, String> {
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Self::Ip(IpAddr::V6(ip)))
                .map_err(|_| format!("{host:?} is not an IPv6 address"));
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        if let Ok(ip) = host.parse::<Ipv6Addr>() {
            return Ok(Self::Ip(IpAddr::V6(ip)));
        }
        // As in the WHATWG URL standard: a host whose last label is numeric
        // is an IPv4 address, or nothing.
        let last = host.rsplit('.').next().unwrap_or_default();
        let numeric = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .or_else(|| last.strip_prefix("0X"))
                .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if numeric {
            return parse_ipv4(&host)
                .map(|ip| Self::Ip(IpAddr::V4(ip)))
                .ok_or_else(|| format!("{host:?} is not a valid IPv4 address"));
        }
        let valid = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid || host.split('.').any(str::is_empty) {
            return Err(format!("{host:?} is not a valid host name"));
        }
        Ok(Self::Name(host))
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// inet_aton's reading of an IPv4 address: one to four parts, each decimal,
/// octal (leading 0) or hexadecimal (0x); the last part fills the bytes left.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = host
        .split('.')
        .map(parse_ipv4_part)
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&part| part > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut address = *last;
    for (i, part) in leading.iter().enumerate() {
        address |= part << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(u32::try_from(address).ok()?))
}

fn parse_ipv4_part(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is zero, as inet_aton reads it.
        return (radix == 16).then_some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_ranges_are_not_public() {
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(addr)), "{addr} counted as public");
        }
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(addr)), "{addr} counted as private");
        }
    }

    #[test]
    fn ipv4_literals_in_any_spelling_mean_one_address() {
        for spelling in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.1",
            "127.1",
            "127.0.1",
            "127.0.0.1.",
        ] {
            assert_eq!(
                Host::parse(spelling),
                Ok(Host::Ip(ip("127.0.0.1"))),
                "{spelling}"
            );
        }
        assert_eq!(
            Host::parse("[::ffff:127.0.0.1]"),
            Ok(Host::Ip(ip("::ffff:127.0.0.1")))
        );
        assert!(Host::parse("1.2.3.256").is_err());
        assert!(Host::parse("4294967296").is_err());
        assert!(Host::parse("example.09").is_err());
        assert_eq!(
            Host::parse("API.Example.com."),
            Ok(Host::Name("api.example.com".into()))
        );
        assert!(Host::parse("a..b").is_err());
        assert!(Host::parse("a b").is_err());
    }

    #[test]
    fn the_operator_opens_ranges() {
        let allowance =
            PrivateAllowance::parse(&["127.0.0.0/8", "10.1.0.0/16", "fd00::1"]).unwrap();
        assert!(allowance.permits(ip("127.0.0.1")));
        assert!(allowance.permits(ip("::ffff:127.0.0.1")));
        assert!(allowance.permits(ip("10.1.200.1")));
        assert!(!allowance.permits(ip("10.2.0.1")));
        assert!(allowance.permits(ip("fd00::1")));
        assert!(!allowance.permits(ip("169.254.169.254")));
        assert!(allowance.permits(ip("8.8.8.8")));
        assert!(PrivateAllowance::parse(&["10.0.0.0/33"]).is_err());
        assert!(PrivateAllowance::parse(&["localhost"]).is_err());
    }
}
