//! Who is on the other end: the client's address as this server can tell it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

/// The client's address: the peer, or with a trusted proxy the address the
/// proxy appended last to `X-Forwarded-For` (the one it saw; earlier entries
/// are whatever the client claimed). Used for rate limits and login
/// throttling only; never stored.
pub fn client_ip(headers: &HeaderMap, extensions: &Extensions, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        if let Some(ip) = forwarded.and_then(|v| v.rsplit(',').next()).and_then(|ip| ip.trim().parse().ok()) {
            return Some(ip);
        }
    }
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}
