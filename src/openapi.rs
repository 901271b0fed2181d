//! The OpenAPI 3.1 description of every JSON endpoint, generated from the
//! handlers' annotations and the types they answer with (utoipa), so it
//! cannot drift from the code; served at `GET /api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        crate::api::list_events,
        crate::api::get_event,
        crate::api::list_errors,
        crate::api::data::stats,
        crate::api::data::export,
        crate::api::data::erase,
        crate::api::health::healthz,
        crate::api::health::readyz,
        openapi_json,
    ),
    components(schemas(
        crate::ingest::CollectorBody,
        crate::ingest::EventIn,
        crate::http_error::ErrorBody,
        crate::http_error::ErrorDetail,
        crate::api::schema::OrderParam,
        crate::api::schema::EventsPage,
        crate::api::schema::ErrorsPage,
        crate::api::schema::Healthz,
        crate::api::schema::Readyz,
        crate::api::data::StatsOut,
        crate::api::data::StatsSeries,
        crate::api::data::StatsPoint,
        crate::api::data::Erasure,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "collector", description = "Sending events"),
        (name = "read", description = "Reading, counting, exporting and erasing events and event errors (a bearer token from `the-eye tokens create`)"),
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

/// The document's route, behind a read-API token like the rest of `/api/`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(state, crate::api::auth::require_token))
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "read", summary = "This description",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
    ))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
