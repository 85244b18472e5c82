//! `allowed_outbound_hosts`: where an app's handlers may send requests.
//!
//! ```toml
//! allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:9000",
//!                           "https://*.example.org", "http://10.1.2.3:*"]
//! ```
//!
//! `scheme://host[:port]`: the port defaults by scheme, `*.` allows every
//! subdomain (not the domain itself), `*` any port. Spin spells it the same.

use super::address::Host;
use std::fmt;

/// One entry of `allowed_outbound_hosts`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRule {
    https: bool,
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(Host),
    /// `*.example.org`: any name ending in `.example.org`.
    Subdomains(String),
}

/// Where an outbound request goes, as the allowlist sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// `https` rather than `http`.
    pub https: bool,
    /// The normalised host.
    pub host: Host,
    /// The port, defaulted by scheme.
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Destination {
    /// The destination of a request URI with a scheme and an authority.
    pub fn of(uri: &http::Uri) -> Result<Self, String> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("scheme {other:?} is not supported")),
            None => return Err("the URL has no scheme".into()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?;
        if authority.as_str().contains('@') {
            return Err("user information in the URL is not supported".into());
        }
        let host = Host::parse(authority.host())?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }
}

impl OutboundRule {
    /// Parses one entry; the error says what is wrong and how to write it.
    pub fn parse(rule: &str) -> Result<Self, String> {
        let example = "write it as \"https://api.example.com\", \"http://127.0.0.1:9000\", \"https://*.example.org\" or \"http://10.1.2.3:*\"";
        let (scheme, rest) = rule
            .split_once("://")
            .ok_or_else(|| format!("{rule:?} has no scheme; {example}"))?;
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => {
                return Err(format!(
                    "{rule:?}: scheme {scheme:?} is not supported (http or https)"
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{rule:?}: give only scheme, host and port, without a path; {example}"
            ));
        }
        let (host, port) = split_port(rest);
        let port = match port {
            None => Some(if https { 443 } else { 80 }),
            Some("*") => None,
            Some(port) => Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|&port| port != 0)
                    .ok_or_else(|| format!("{rule:?}: {port:?} is not a port (1-65535 or *)"))?,
            ),
        };
        let host = if let Some(domain) = host.strip_prefix("*.") {
            match Host::parse(domain) {
                Ok(Host::Name(domain)) => HostPattern::Subdomains(domain),
                _ => return Err(format!("{rule:?}: {domain:?} after `*.` is not a domain")),
            }
        } else if host == "*" {
            return Err(format!(
                "{rule:?}: any host is not allowed; name the hosts, or `*.` a domain"
            ));
        } else {
            HostPattern::Exact(Host::parse(host).map_err(|err| format!("{rule:?}: {err}"))?)
        };
        Ok(Self { https, host, port })
    }

    /// Whether this rule lets a request go to `to`.
    pub fn allows(&self, to: &Destination) -> bool {
        self.https == to.https
            && self.port.is_none_or(|port| port == to.port)
            && match (&self.host, &to.host) {
                (HostPattern::Exact(host), to) => host == to,
                (HostPattern::Subdomains(domain), Host::Name(name)) => name
                    .strip_suffix(domain.as_str())
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                (HostPattern::Subdomains(_), Host::Ip(_)) => false,
            }
    }
}

/// `host:port` into its parts; an IPv6 literal keeps its brackets.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.rfind("]:") {
            Some(end) => (&authority[..=end], Some(&authority[end + 2..])),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(url: &str) -> Destination {
        Destination::of(&url.parse().unwrap()).unwrap()
    }

    fn allows(rule: &str, url: &str) -> bool {
        OutboundRule::parse(rule).unwrap().allows(&to(url))
    }

    #[test]
    fn scheme_host_and_port_must_match() {
        assert!(allows(
            "https://api.example.com",
            "https://api.example.com/v1"
        ));
        assert!(allows(
            "https://api.example.com",
            "https://API.example.com.:443/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "http://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://evil.com/?api.example.com"
        ));
        assert!(allows("http://127.0.0.1:9000", "http://2130706433:9000/"));
        assert!(allows("http://10.1.2.3:*", "http://10.1.2.3:1234/"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080/"));
    }

    #[test]
    fn a_star_dot_allows_subdomains_only() {
        assert!(allows("https://*.example.org", "https://a.example.org/"));
        assert!(allows("https://*.example.org", "https://a.b.example.org/"));
        assert!(!allows("https://*.example.org", "https://example.org/"));
        assert!(!allows("https://*.example.org", "https://badexample.org/"));
    }

    #[test]
    fn bad_rules_say_how_to_write_them() {
        for (rule, expected) in [
            ("api.example.com", "has no scheme"),
            ("ftp://x", "not supported"),
            ("https://x/path", "without a path"),
            ("https://x:99999", "is not a port"),
            ("https://*", "any host is not allowed"),
            ("https://*.1.2.3.4", "is not a domain"),
        ] {
            let err = OutboundRule::parse(rule).unwrap_err();
            assert!(err.contains(expected), "{rule}: {err}");
        }
    }
}
