use crate::RequestId;
use std::net::IpAddr;

/// What the host knows about one incoming request besides the request
/// itself: bound once to the instance that serves it and seen by every
/// host service (logs, outbound fetch's consistent hashing, later the
/// client-info interface and verified JWT claims).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestMeta {
    /// The request's id (`x-request-id`, log lines).
    pub id: RequestId,
    /// The client's address, seen through the node's trusted proxies
    /// ([`crate::client::TrustedProxies`]); `None` for requests made
    /// in-process (benchmarks, tests).
    pub client: Option<IpAddr>,
    /// Whether the client connected over TLS.
    pub https: bool,
}

impl RequestMeta {
    /// A request with a fresh id and no client address.
    pub fn local() -> Self {
        Self {
            id: RequestId::next(),
            client: None,
            https: false,
        }
    }
}
