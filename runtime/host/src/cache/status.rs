//! `Cache-Status` (RFC 9211): on every response that went through the
//! cache, why it was or was not served from it.

use http::HeaderValue;
use std::io::Write as _;

/// One `Cache-Status` member, ours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Served from the cache without going to the origin.
    pub hit: bool,
    /// Why the request went to the origin: `uri-miss`, `vary-miss`,
    /// `miss`, `stale`, `request` (the request's directives), `method`.
    pub fwd: Option<&'static str>,
    /// The status the origin answered with.
    pub fwd_status: Option<u16>,
    /// Seconds of freshness left (negative once stale).
    pub ttl: Option<i64>,
    /// The response was stored.
    pub stored: bool,
    /// The request waited for another one's response instead of going to
    /// the origin itself.
    pub collapsed: bool,
    /// Which tier answered, or why the response was not stored.
    pub detail: Option<&'static str>,
}

/// The cache's name in `Cache-Status`.
const NAME: &str = "Outpost";

impl CacheStatus {
    pub fn header_value(&self) -> HeaderValue {
        // Written on the stack: it goes into every response of a cached
        // app, and the value copies it once anyway.
        let mut buffer = [0u8; 160];
        let capacity = buffer.len();
        let mut value = &mut buffer[..];
        let _ = value.write_all(NAME.as_bytes());
        if self.hit {
            let _ = value.write_all(b"; hit");
        }
        if let Some(fwd) = self.fwd {
            let _ = write!(value, "; fwd={fwd}");
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(value, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(value, "; ttl={ttl}");
        }
        if self.stored {
            let _ = value.write_all(b"; stored");
        }
        if self.collapsed {
            let _ = value.write_all(b"; collapsed");
        }
        if let Some(detail) = self.detail {
            let _ = write!(value, "; detail={detail}");
        }
        let written = capacity - value.len();
        HeaderValue::from_bytes(&buffer[..written])
            .expect("tokens and numbers make a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_written_in_rfc_9211_syntax() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(58),
            detail: Some("L1"),
            ..CacheStatus::default()
        };
        assert_eq!(hit.header_value(), "Outpost; hit; ttl=58; detail=L1");
        let miss = CacheStatus {
            fwd: Some("uri-miss"),
            fwd_status: Some(200),
            stored: true,
            ..CacheStatus::default()
        };
        assert_eq!(
            miss.header_value(),
            "Outpost; fwd=uri-miss; fwd-status=200; stored"
        );
    }
}
