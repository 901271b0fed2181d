//! Read-API bearer tokens: random secrets of which only a SHA-256 is stored.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::app::AppState;

/// Prefix that makes a leaked token easy to recognise (and to scan for).
const PREFIX: &str = "eye_rt_";

/// A new token: 256 random bits, URL-safe. A plain SHA-256 suffices for storing
/// it because, unlike a password, it cannot be guessed from a dictionary.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Middleware: lets the request through only with a valid `Authorization: Bearer` token.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return Err(ApiError::Unauthorized(
            "send Authorization: Bearer <token> (create one with `the-eye tokens create`)",
        ));
    };
    let hash = hash_token(token);
    // Asked every time, never cached: a revoked token is refused at once.
    let Some(grant) = state.store.token_grant(&hash).await? else {
        return Err(ApiError::Unauthorized("the bearer token is not valid"));
    };
    // What the token may do beyond reading, for the handlers that ask.
    request.extensions_mut().insert(grant);
    if state.token_uses.due(hash) {
        if let Err(e) = state.store.touch_token(&hash, state.clock.now()).await {
            tracing::warn!(error = %e, "cannot record a token's last use");
        }
    }
    Ok(next.run(request).await)
}

/// When each token's last use was written, so that it is written at most
/// once a minute however busy the token is.
#[derive(Debug, Default)]
pub struct TokenUses(std::sync::Mutex<std::collections::HashMap<[u8; 32], tokio::time::Instant>>);

/// How often a token's last use is written.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl TokenUses {
    /// True (and noted) when this token's use should be written now.
    fn due(&self, hash: [u8; 32]) -> bool {
        let Ok(mut seen) = self.0.lock() else { return false };
        let now = tokio::time::Instant::now();
        if seen.get(&hash).is_some_and(|at| now.duration_since(*at) < TOUCH_EVERY) {
            return false;
        }
        if seen.len() > 10_000 {
            seen.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
        }
        seen.insert(hash, now);
        true
    }
}

/// Adds the `WWW-Authenticate` challenge that a 401 must carry.
pub(super) fn challenge(response: &mut Response) {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"the-eye\""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
