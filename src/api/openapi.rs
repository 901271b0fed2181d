//! The OpenAPI 3.1 description of every JSON endpoint, generated from the
//! handlers' annotations and the types they answer with (utoipa), so it
//! cannot drift from the code; served at `GET /api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "The Eye",
        description = "A self-hosted collector of user-behaviour events. Send events to `/collector`; \
            read them back through `/api/`. Every error answer is `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
        license(name = "MIT"),
    ),
    paths(
        crate::ingest::collect,
        super::list_events,
        super::get_event,
        super::list_errors,
        super::health::healthz,
        super::health::readyz,
        openapi_json,
    ),
    components(schemas(CollectorBody, EventIn, OrderParam, ErrorBody, ErrorDetail, EventsPage, ErrorsPage, Healthz, Readyz)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "collector", description = "Sending events"),
        (name = "read", description = "Reading events and event errors (a bearer token from `the-eye tokens create`)"),
        (name = "health", description = "For load balancers and operators"),
    )
)]
pub struct ApiDoc;

/// The two ways of proving who you are.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A read-API token")).build(),
            ),
        );
        components.add_security_scheme(
            "write_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Eye-Key",
                "An application's write key (or `?key=`)",
            ))),
        );
    }
}

/// One event as a site sends it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventIn {
    /// The visitor's session.
    pub session_id: String,
    /// A category that exists, like `page interaction`.
    pub category: String,
    /// The event's name, like `pageview`.
    pub name: String,
    /// Anything; the event type's JSON Schema, if it has one, decides. The
    /// seeded types require `host` and `path`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When it happened: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff]` read as UTC.
    pub timestamp: String,
    /// The client's id for the event; without one, an id is derived from its content.
    pub event_id: Option<Uuid>,
}

/// What `POST /collector` takes: one event object, or an array of them. The
/// collector checks only that the body is JSON within the limits; each item
/// is validated later and becomes an event or an event error (see
/// `EventIn` for the fields a valid one has). A body that is neither an
/// object nor an array is refused with 400.
#[derive(Debug)]
pub struct CollectorBody;

impl utoipa::PartialSchema for CollectorBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
        let one = ObjectBuilder::new().schema_type(Type::Object).description(Some("One event, fields as in EventIn"));
        let many = ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some("An event object; anything else becomes an event error")),
            )
            .description(Some("Several events"));
        OneOfBuilder::new().item(one).item(many).into()
    }
}

impl ToSchema for CollectorBody {}

/// The order of a listing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderParam {
    /// Oldest first.
    Asc,
    /// Newest first (the default).
    Desc,
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`unauthorized`, `too_large`, `invalid_json`, …).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The request's id, as in `X-Request-Id` and the log.
    pub request_id: Option<String>,
    /// For a body that was not JSON: the event error that keeps it.
    pub recorded_as: Option<Uuid>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// The events.
    pub events: Vec<super::EventOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A page of event errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorsPage {
    /// The errors.
    pub errors: Vec<super::ErrorOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Healthz {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readyz {
    /// `ready`, `unavailable` or `shutting_down`.
    pub status: String,
    /// `ok`, or why the store failed.
    pub store: String,
    /// `ok`, or why the queue failed.
    pub queue: String,
    /// Entries not yet acknowledged (null when the queue did not answer).
    pub queue_depth: Option<u64>,
    /// Entries no worker holds.
    pub queue_waiting: Option<u64>,
    /// Entries a worker holds now.
    pub queue_in_flight: Option<u64>,
}

/// The document's route, behind a read-API token like the rest of `/api/`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(state, super::auth::require_token))
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "read", summary = "This description",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    ))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
