//! Host names a server answers to (the `allowed_hosts` setting, Django's
//! `ALLOWED_HOSTS`): parsing and matching. The middleware that applies them
//! to every request lives in the `hosts` module, above.

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
