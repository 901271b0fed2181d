//! Allowed hosts: a request whose `Host` this server does not answer to gets a
//! 400 before any handler runs, as Django's `ALLOWED_HOSTS` does. It stops
//! Host-header attacks (poisoned links, cache poisoning) and requests for
//! other sites that DNS or a proxy sent here by mistake.

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use crate::config::HttpSettings;
use crate::http_error::error_response;

pub use crate::domain::hosts::AllowedHosts;

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

/// The 400 for a request whose host is not in `allowed_hosts`; `None` lets it through.
pub fn refusal(settings: &HttpSettings, request: &Request) -> Option<Response> {
    if ANY_HOST.contains(&request.uri().path()) {
        return None;
    }
    let allowed = |host: &str| {
        if settings.allowed_hosts.allows(host) {
            Ok(())
        } else {
            tracing::debug!(host = %host.escape_debug(), "request for a host that is not allowed");
            Err("this server does not answer to that host; add it to THE_EYE_ALLOWED_HOSTS if it should")
        }
    };
    let verdict = requested_host(request.headers(), settings.trust_proxy).and_then(|host| allowed(&host));
    // An absolute-form target (`GET http://host/path`) names the host a second
    // time, and HTTP says that one wins over `Host`: it must be allowed too.
    let verdict = verdict.and_then(|()| match request.uri().authority() {
        Some(authority) => allowed(authority.as_str()),
        None => Ok(()),
    });
    verdict.err().map(|message| error_response(StatusCode::BAD_REQUEST, "bad_host", message))
}
