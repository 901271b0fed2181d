//! What every signed-in admin handler is written with.
//!
//! - [`Admin`]: an extractor giving the handler the shared state and the
//!   signed-in user together, with the page helpers as methods.
//! - [`AdminError`]: why a page cannot be shown. Handlers return
//!   [`AdminResult`] and use `?`; a store failure or a missing row becomes the
//!   right page, with its status, inside the admin frame (the session
//!   middleware renders it, since it knows who is signed in).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::web;
use crate::app::AppState;
use crate::store::{AdminSession, StoreError};

/// The state and the signed-in user, for a handler behind the session middleware.
#[derive(Debug, Clone)]
pub struct Admin {
    /// What every handler shares.
    pub state: AppState,
    /// Who is signed in.
    pub session: AdminSession,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // The session middleware puts it there; a route outside it is a wiring bug.
        let session = parts.extensions.get::<AdminSession>().cloned().ok_or(AdminError::NoSession)?;
        Ok(Self { state: state.clone(), session })
    }
}

impl Admin {
    /// A page of the signed-in user.
    pub fn page(&self, name: &str, ctx: minijinja::Value) -> Response {
        web::page(&self.session, name, ctx)
    }

    /// A page of the signed-in user with a status other than 200.
    pub fn page_with(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        web::page_with(status, &self.session, name, ctx)
    }

    /// A confirmation page whose button posts to `action`.
    pub fn confirm(&self, heading: &str, text: &str, action: &str, back: &str) -> Response {
        self.confirm_with(heading, text, action, back, Vec::new(), "")
    }

    /// A confirmation page whose button (labelled `button`; a blank one is
    /// the danger button "Yes, I'm sure") posts `fields` to `action`.
    pub fn confirm_with(
        &self,
        heading: &str,
        text: &str,
        action: &str,
        back: &str,
        fields: Vec<(String, String)>,
        button: &str,
    ) -> Response {
        let ctx = minijinja::context! { heading, text, action, back, fields, button };
        web::page(&self.session, "admin/confirm.html", ctx)
    }

    /// Records what this user did in the audit log.
    pub async fn audit(&self, action: &str, object: &str, detail: String) {
        web::audit(&self.state, &self.session, action, object, detail).await
    }
}

/// What a signed-in handler returns.
pub type AdminResult = Result<Response, AdminError>;

/// Why an admin page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 404: there is no such thing; the text names it ("event", "application").
    #[error("there is no such {0}")]
    NotFound(&'static str),
    /// 400: what was asked cannot be done; the text says why.
    #[error("{0}")]
    BadRequest(String),
    /// 503: the store failed. The cause is logged once, never shown.
    #[error("store unavailable: {0}")]
    Unavailable(#[from] StoreError),
    /// 500: something of ours failed (hashing a password, say); logged, not shown.
    #[error("{0}")]
    Internal(String),
    /// 500: a signed-in route was wired outside the session middleware.
    #[error("no session on a signed-in route")]
    NoSession,
}

/// The message page an [`AdminError`] stands for, carried on its response
/// until a middleware that knows the user renders it inside the frame.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// The page's heading.
    pub heading: &'static str,
    /// One sentence for people.
    pub message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match &self {
            Self::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", format!("There is no such {what}.")),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "Bad request", why.clone()),
            Self::Unavailable(e) => {
                tracing::error!(error = %e, "admin page cannot reach the store");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The database is not available; try again soon.".into(),
                )
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "admin page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Server error", "Something went wrong on our side.".into())
            }
            Self::NoSession => {
                tracing::error!("a signed-in admin route has no session middleware");
                (StatusCode::INTERNAL_SERVER_ERROR, "Server error", "Something went wrong on our side.".into())
            }
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(ErrorPage { heading, message });
        response
    }
}

/// Renders an error page left on `response` by an [`AdminError`]: inside the
/// frame when someone is signed in, plain otherwise. Other responses pass.
pub fn render_error_page(response: Response, session: Option<&AdminSession>) -> Response {
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else { return response };
    let ctx = minijinja::context! { heading => page.heading, message => page.message };
    match session {
        Some(session) => web::page_with(response.status(), session, "admin/message.html", ctx),
        None => web::message(response.status(), page.heading, &page.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> AdminSession {
        AdminSession {
            token_hash: "h".into(),
            username: "ada".into(),
            csrf_token: "t".into(),
            expires_at: chrono::Utc::now(),
        }
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
        String::from_utf8_lossy(&bytes).to_string()
    }

    #[tokio::test]
    async fn errors_become_pages_inside_the_frame() {
        let cases = [
            (AdminError::NotFound("event"), StatusCode::NOT_FOUND, "There is no such event."),
            (
                AdminError::Unavailable(StoreError::Unavailable("disk".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                "not available",
            ),
            (AdminError::BadRequest("bad filter".into()), StatusCode::BAD_REQUEST, "bad filter"),
        ];
        for (error, status, text) in cases {
            let page = render_error_page(error.into_response(), Some(&session()));
            assert_eq!(page.status(), status);
            let html = body(page).await;
            assert!(html.contains(text), "{html}");
            assert!(html.contains("<nav class=\"main\"") && html.contains("Signed in as"), "framed: {html}");
        }
    }

    #[tokio::test]
    async fn a_store_failure_never_shows_its_cause() {
        let page =
            render_error_page(AdminError::from(StoreError::Unavailable("secret path".into())).into_response(), None);
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body(page).await.contains("secret path"));
    }

    #[test]
    fn other_responses_pass_untouched() {
        let ok = StatusCode::OK.into_response();
        assert_eq!(render_error_page(ok, Some(&session())).status(), StatusCode::OK);
    }
}
