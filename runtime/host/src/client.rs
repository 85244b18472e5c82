//! Who the client is: its address, seen through the proxies the operator
//! trusts (`[http] trusted_proxies`), and what handlers learn of it
//! through `outpost:edge/client`.
//!
//! Behind a load balancer every connection comes from the balancer; the
//! client's own address is in `Forwarded` or `X-Forwarded-For`, which any
//! client can also send. So the node believes those fields only on
//! connections from a trusted proxy, and only as far as the chain of
//! trusted proxies goes: walking the hops from the nearest, the first
//! address that is not a trusted proxy is the client (the "rightmost
//! untrusted" rule). Everything that keys by client (rate limits,
//! consistent hashing, handlers) sees this one address.

use crate::RequestMeta;
use crate::bindings::outpost::edge::client::{Host, Location};
use crate::geo::GeoDb;
use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Hops of a forwarding chain looked at, at most: a client can make the
/// chain as long as its headers.
const MAX_HOPS: usize = 32;

/// The proxies whose forwarding fields the node believes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR ranges or single addresses (`"10.0.0.0/8"`,
    /// `"192.0.2.7"`).
    pub fn parse(ranges: &[&str]) -> Result<Self, String> {
        let mut trusted = Self::default();
        for range in ranges {
            trusted.add(range)?;
        }
        Ok(trusted)
    }

    /// Trusts one more range or address.
    pub fn add(&mut self, range: &str) -> Result<(), String> {
        let range = range
            .parse::<IpNet>()
            .or_else(|_| range.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{range:?} is not a CIDR range or an address"))?;
        self.0.push(range);
        Ok(())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|range| range.contains(&ip))
    }

    /// The client of a connection from `peer` carrying `headers`.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        // Nearest hop first. `Forwarded` (RFC 7239) wins over the older
        // field when a proxy sends both.
        let mut hops: Vec<Option<IpAddr>> = if headers.contains_key(FORWARDED) {
            forwarded_for(headers)
        } else {
            x_forwarded_for(headers)
        };
        hops.reverse();
        let mut client = peer;
        for hop in hops.into_iter().take(MAX_HOPS) {
            // A hop that names no address (`unknown`, an obfuscated
            // name, garbage) ends what can be known: the last trusted
            // proxy is the nearest thing to the client.
            let Some(hop) = hop else { break };
            client = hop.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The `for=` addresses of `Forwarded`, farthest first.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let address = element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            hops.push(address.and_then(node_address));
        }
    }
    hops
}

/// The addresses of `X-Forwarded-For`, farthest first.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| {
            let items: Vec<Option<IpAddr>> = match value.to_str() {
                Ok(value) => value
                    .split(',')
                    .map(|item| node_address(item.trim()))
                    .collect(),
                Err(_) => vec![None],
            };
            items
        })
        .collect()
}

/// An address as forwarding fields write it: `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711` or a bare IPv6 address.
fn node_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// One request's view of its client, for `outpost:edge/client`.
pub struct ClientCtx {
    request: Option<RequestMeta>,
    geo: Option<Arc<GeoDb>>,
}

impl ClientCtx {
    /// A context looking clients up in `geo`, if the node has databases.
    pub fn new(geo: Option<Arc<GeoDb>>) -> Self {
        Self { request: None, geo }
    }

    /// Binds the context to the request the instance serves.
    pub fn begin(&mut self, request: RequestMeta) {
        self.request = Some(request);
    }
}

impl Host for ClientCtx {
    fn ip(&mut self) -> Option<String> {
        self.request?.client.map(|ip| ip.to_string())
    }

    fn request_id(&mut self) -> String {
        self.request
            .map(|request| request.id.to_string())
            .unwrap_or_default()
    }

    fn geo(&mut self) -> Option<Location> {
        let geo = self.geo.as_ref()?.lookup(self.request?.client?)?;
        Some(Location {
            country: geo.country,
            continent: geo.continent,
            city: geo.city,
            asn: geo.asn,
            as_org: geo.as_org,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    fn client(trusted: &[&str], peer: &str, lines: &[(&'static str, &str)]) -> String {
        let trusted = TrustedProxies::parse(trusted).unwrap();
        trusted
            .client(peer.parse().unwrap(), &headers(lines))
            .to_string()
    }

    #[test]
    fn forwarding_fields_count_only_from_trusted_proxies() {
        let spoofed = [("x-forwarded-for", "1.2.3.4")];
        assert_eq!(client(&[], "198.51.100.7:1", &spoofed), "198.51.100.7");
        assert_eq!(
            client(&["10.0.0.0/8"], "198.51.100.7:1", &spoofed),
            "198.51.100.7"
        );
        assert_eq!(client(&["10.0.0.0/8"], "10.0.0.2:1", &spoofed), "1.2.3.4");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let lb = ["10.0.0.0/8"];
        // The client wrote 6.6.6.6 itself; the proxy appended the address
        // it saw.
        let chain = [("x-forwarded-for", "6.6.6.6, 203.0.113.9")];
        assert_eq!(client(&lb, "10.0.0.2:1", &chain), "203.0.113.9");
        let through_two = [("x-forwarded-for", "203.0.113.9, 10.1.1.1")];
        assert_eq!(client(&lb, "10.0.0.2:1", &through_two), "203.0.113.9");
        let split = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.1.1.1"),
        ];
        assert_eq!(client(&lb, "10.0.0.2:1", &split), "203.0.113.9");
        let all_trusted = [("x-forwarded-for", "10.9.9.9, 10.1.1.1")];
        assert_eq!(client(&lb, "10.0.0.2:1", &all_trusted), "10.9.9.9");
        let garbage = [("x-forwarded-for", "203.0.113.9, bogus, 10.1.1.1")];
        assert_eq!(client(&lb, "10.0.0.2:1", &garbage), "10.1.1.1");
        assert_eq!(
            client(&lb, "10.0.0.2:1", &[]),
            "10.0.0.2",
            "no field: the proxy"
        );
    }

    #[test]
    fn forwarded_is_read_in_every_spelling_and_wins() {
        let lb = ["10.0.0.0/8", "::1/128"];
        let fields = [
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            ("x-forwarded-for", "6.6.6.6"),
        ];
        assert_eq!(client(&lb, "10.0.0.2:1", &fields), "192.0.2.60");
        let v6 = [("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")];
        assert_eq!(client(&lb, "[::1]:1", &v6), "2001:db8:cafe::17");
        let hidden = [("forwarded", "for=_hidden, for=10.1.1.1")];
        assert_eq!(client(&lb, "10.0.0.2:1", &hidden), "10.1.1.1");
        let mapped = [("x-forwarded-for", "::ffff:192.0.2.1")];
        assert_eq!(client(&lb, "10.0.0.2:1", &mapped), "192.0.2.1");
    }

    #[test]
    fn ranges_parse_with_errors_that_say_what_is_wrong() {
        assert!(TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.7", "fd00::/8"]).is_ok());
        let err = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("not a CIDR range"), "{err}");
    }
}
