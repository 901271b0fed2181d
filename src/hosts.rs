//! Allowed hosts: a request whose `Host` this server does not answer to gets a
//! 400 before any handler runs, as Django's `ALLOWED_HOSTS` does. It stops
//! Host-header attacks (poisoned links, cache poisoning) and requests for
//! other sites that DNS or a proxy sent here by mistake.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use crate::http_error::error_response;

/// The parsed `allowed_hosts` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<String>,
}

impl AllowedHosts {
    /// Parses a comma-separated list; entries are host names, IP addresses
    /// (IPv6 in brackets), `.domain` for a domain and its subdomains, or `*`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let patterns: Vec<String> =
            list.split(',').map(|p| p.trim().to_ascii_lowercase()).filter(|p| !p.is_empty()).collect();
        if patterns.is_empty() {
            return Err("allowed_hosts is empty: no request could be served".into());
        }
        for p in &patterns {
            let name = p.strip_prefix('.').unwrap_or(p);
            if p != "*" && split_host(name).is_none_or(|(_, port)| port.is_some()) {
                return Err(format!("allowed_hosts: {p:?} is not a host name (give names without ports)"));
            }
        }
        Ok(Self { patterns })
    }

    /// True when `host` (a Host header value, port allowed) is served here.
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, _)) = split_host(host) else { return false };
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        self.patterns.iter().any(|p| {
            p == "*"
                || p == name
                || p.strip_prefix('.').is_some_and(|domain| name == domain || name.ends_with(p.as_str()))
        })
    }
}

/// Splits `host[:port]` after checking its syntax: a DNS name, an IPv4
/// address or a bracketed IPv6 address, and an optional numeric port.
/// Anything else (`valid:x@evil`, spaces, slashes) is refused.
fn split_host(value: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        return Some((&value[..inside.len() + 2], port));
    } else {
        match value.rsplit_once(':') {
            Some((n, p)) => (n, Some(p.parse::<u16>().ok()?)),
            None => (value, None),
        }
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (!label.is_empty() || i > 0)
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some((name, port))
}

/// The host the client asked for: `Host`, or with a trusted proxy `X-Forwarded-Host`.
/// `Err` names what is wrong.
fn requested_host(headers: &HeaderMap, trust_proxy: bool) -> Result<String, &'static str> {
    let forwarded = headers.get("x-forwarded-host");
    if let Some(value) = forwarded {
        if !trust_proxy {
            return Err("X-Forwarded-Host is not accepted: no trusted proxy is configured (THE_EYE_TRUST_PROXY)");
        }
        // The first value is the one the client sent to the first proxy.
        let first = value.to_str().map_err(|_| "X-Forwarded-Host is not text")?;
        return Ok(first.split(',').next().unwrap_or("").trim().to_string());
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next().ok_or("the Host header is missing")?;
    if hosts.next().is_some() {
        // Which one a cache or a proxy in front believed is anyone's guess.
        return Err("more than one Host header");
    }
    Ok(host.to_str().map_err(|_| "the Host header is not text")?.to_string())
}

/// Paths answered whatever the Host: load balancers and orchestrators probe
/// nodes by address, and these reveal nothing.
const ANY_HOST: [&str; 2] = ["/healthz", "/readyz"];

/// Middleware: refuses requests for hosts not in `allowed_hosts` with a 400.
pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if ANY_HOST.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let allowed = |host: &str| {
        if state.allowed_hosts.allows(host) {
            Ok(())
        } else {
            tracing::debug!(host = %host.escape_debug(), "request for a host that is not allowed");
            Err("this server does not answer to that host; add it to THE_EYE_ALLOWED_HOSTS if it should")
        }
    };
    let verdict = requested_host(request.headers(), state.settings.trust_proxy).and_then(|host| allowed(&host));
    // An absolute-form target (`GET http://host/path`) names the host a second
    // time, and HTTP says that one wins over `Host`: it must be allowed too.
    let verdict = verdict.and_then(|()| match request.uri().authority() {
        Some(authority) => allowed(authority.as_str()),
        None => Ok(()),
    });
    match verdict {
        Ok(()) => next.run(request).await,
        Err(message) => error_response(StatusCode::BAD_REQUEST, "bad_host", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &str) -> AllowedHosts {
        AllowedHosts::parse(list).unwrap()
    }

    #[test]
    fn the_default_allows_local_names_with_any_port() {
        let h = hosts("localhost,127.0.0.1,[::1]");
        for ok in ["localhost", "localhost:8000", "LOCALHOST", "127.0.0.1:8000", "[::1]", "[::1]:8000", "localhost."] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in ["example.com", "127.0.0.2", "[::2]", "localhost.evil.com", "evillocalhost"] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn a_leading_dot_allows_the_domain_and_its_subdomains() {
        let h = hosts(".example.com");
        assert!(h.allows("example.com") && h.allows("www.example.com:443") && h.allows("a.b.example.com"));
        assert!(!h.allows("badexample.com") && !h.allows("example.com.evil.org"));
    }

    #[test]
    fn malformed_host_values_are_refused_even_with_a_wildcard() {
        let h = hosts("*");
        assert!(h.allows("anything.example"));
        for bad in ["valid:x@evil", "valid@evil", "a b", "a/b", "", ":80", "host:port", "host:99999", "[::1", "[zz]:1"]
        {
            assert!(!h.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_setting_is_checked() {
        assert!(AllowedHosts::parse(" , ").is_err());
        assert!(AllowedHosts::parse("example.com:80").is_err());
        assert!(AllowedHosts::parse("ex ample.com").is_err());
    }
}
