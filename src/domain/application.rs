//! Applications: the websites and servers allowed to send events.

use serde::Serialize;

/// A sender of events, named by its write key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Application {
    /// Unique name, recorded on every event it sends.
    pub name: String,
    /// The write key. With origins it is a *browser* key, public by nature;
    /// without origins it is a *server* key and must stay secret.
    pub key: String,
    /// Origins (`https://shop.example.com`) a browser request must come from.
    pub origins: Vec<String>,
    /// Revoked applications are refused.
    pub active: bool,
}

impl Application {
    /// True for a server-side application: no origins, so it may send without one.
    pub fn is_server(&self) -> bool {
        self.origins.is_empty()
    }
}

/// Normalises an origin (or any URL) to `scheme://host[:port]`, lowercase, default
/// ports dropped, as browsers send it in `Origin`. `None` when it is not an
/// http(s) origin (including the opaque `null`).
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                if authority.starts_with('[') && authority.ends_with(']') {
                    (authority.as_str(), None)
                } else {
                    return None;
                }
            } else {
                (h, Some(p))
            }
        }
        _ => (authority.as_str(), None),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    Some(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Origins as an operator types them (one per item, blanks skipped), normalised
/// and without repeats; the message names the first that is not an origin.
pub fn parse_origins<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut origins: Vec<String> = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let origin =
            normalize_origin(item).ok_or_else(|| format!("{item:?} is not an origin like https://shop.example.com"))?;
        // An origin is scheme, host and port only: a path here is a mistake
        // (the pages under it would not be the only ones allowed).
        let after_authority = item.split_once("://").map_or("", |(_, rest)| rest);
        if after_authority.find(['/', '?', '#']).is_some_and(|i| !after_authority[i..].trim_matches('/').is_empty()) {
            return Err(format!(
                "{item:?} has a path, but an origin is only scheme, host and port: use {origin:?} (every page of that site may then send)"
            ));
        }
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

/// Checks an application name: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_app_name(name: &str) -> Result<(), String> {
    let ok = name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c));
    if name.is_empty() || name.chars().count() > 64 || !ok {
        return Err("an application name is 1 to 64 letters, digits, - _ or .".into());
    }
    Ok(())
}

/// A new write key: 192 random bits, URL-safe, with a recognisable prefix.
pub fn new_key() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("eye_wk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_with_a_path_is_refused_with_the_origin_to_use() {
        let err = parse_origins(["https://shop.example.com/checkout"]).unwrap_err();
        assert!(err.contains("has a path") && err.contains("\"https://shop.example.com\""), "{err}");
        assert!(parse_origins(["https://shop.example.com?x=1"]).is_err());
        // A bare trailing slash is how people write an origin; it is fine.
        assert_eq!(parse_origins(["https://shop.example.com/"]).unwrap(), ["https://shop.example.com"]);
    }

    #[test]
    fn origins_are_normalised_like_browsers_send_them() {
        assert_eq!(normalize_origin("https://Shop.Example.com/"), Some("https://shop.example.com".into()));
        assert_eq!(normalize_origin("https://shop.example.com:443"), Some("https://shop.example.com".into()));
        assert_eq!(normalize_origin("http://localhost:8000/website/?a=1"), Some("http://localhost:8000".into()));
        assert_eq!(normalize_origin("http://[::1]:8000"), Some("http://[::1]:8000".into()));
        assert_eq!(normalize_origin("http://[::1]"), Some("http://[::1]".into()));
        for bad in ["null", "", "file:///etc/passwd", "javascript:alert(1)", "https://", "https://a@b", "http://h:x"] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_unique_and_prefixed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(a.starts_with("eye_wk_") && a.len() == 7 + 32);
    }
}
