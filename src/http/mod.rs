//! The HTTP front end: the SCIM routes under the configured base path, bearer-token auth,
//! body limits, and SCIM error bodies. Handlers stay thin: they parse, call the store, and
//! render; the rules live in `scim` and `store`.

pub mod admin;
mod auth;
mod body;
mod discovery;
pub mod error;
pub mod limits;
mod listener;
pub mod observe;
mod resources;
pub mod status_page;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::{Config, ScimConfig};
use crate::scim::{ResourceKind, ScimError};
use crate::store::Store;
use error::ApiError;
pub use listener::{serve, ConnectionLimits};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Public URL of the SCIM base path (for `meta.location` and `$ref`).
    pub base_url: Arc<str>,
    pub limits: Arc<ScimConfig>,
    pub body_limits: body::BodyLimits,
    /// Hash of the token from `auth.token_env` / `auth.token_file`, if configured.
    pub configured_token: Option<[u8; 32]>,
    /// Failed bearer-token attempts per client address (`server.auth_failures_per_minute`).
    pub auth_failures: Arc<limits::AuthFailures>,
    /// Permits for concurrent SCIM requests (`server.max_concurrent_requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(
        config: &Config,
        store: Store,
        bound: std::net::SocketAddr,
    ) -> Result<AppState, crate::config::ConfigError> {
        Ok(AppState {
            store,
            base_url: config.public_url(bound).into(),
            limits: Arc::new(config.scim.clone()),
            body_limits: body::BodyLimits {
                max_bytes: config.server.max_body_bytes,
                max_depth: config.server.max_json_depth,
                timeout: std::time::Duration::from_secs(config.server.body_timeout_secs),
            },
            configured_token: config
                .configured_token()?
                .map(|t| crate::store::hash_token(&t)),
            auth_failures: Arc::new(limits::AuthFailures::new(
                config.server.auth_failures_per_minute,
            )),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_concurrent_requests,
            )),
        })
    }
}

/// The whole application: SCIM routes under `base_path`, health outside auth.
pub fn router(state: AppState, base_path: &str) -> Router {
    let scim = Router::new()
        .route(
            "/Users",
            get(|s, q| resources::list(s, ResourceKind::User, q))
                .post(|s, q, h, b| resources::create(s, ResourceKind::User, q, h, b)),
        )
        .route(
            "/Users/{id}",
            get(|s, p, q, h| resources::get_one(s, ResourceKind::User, p, q, h))
                .put(|s, p, q, h, b| resources::replace(s, ResourceKind::User, p, q, h, b))
                .patch(|s, p, q, h, b| resources::patch(s, ResourceKind::User, p, q, h, b))
                .delete(|s, p, h| resources::delete(s, ResourceKind::User, p, h)),
        )
        .route(
            "/Groups",
            get(|s, q| resources::list(s, ResourceKind::Group, q))
                .post(|s, q, h, b| resources::create(s, ResourceKind::Group, q, h, b)),
        )
        .route(
            "/Groups/{id}",
            get(|s, p, q, h| resources::get_one(s, ResourceKind::Group, p, q, h))
                .put(|s, p, q, h, b| resources::replace(s, ResourceKind::Group, p, q, h, b))
                .patch(|s, p, q, h, b| resources::patch(s, ResourceKind::Group, p, q, h, b))
                .delete(|s, p, h| resources::delete(s, ResourceKind::Group, p, h)),
        )
        .route(
            "/Users/.search",
            post(|s, h, b| resources::search(s, &[ResourceKind::User], h, b)),
        )
        .route(
            "/Groups/.search",
            post(|s, h, b| resources::search(s, &[ResourceKind::Group], h, b)),
        )
        .route(
            "/.search",
            post(|s, h, b| resources::search(s, &[ResourceKind::User, ResourceKind::Group], h, b)),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Outside auth, so a flood is shed before any token is hashed or looked up.
        .layer(middleware::from_fn_with_state(
            state.in_flight.clone(),
            limits::concurrency_limit,
        ))
        // Outermost, so requests refused by auth are counted, logged and get a request id.
        .layer(middleware::from_fn_with_state(
            observe::Observe::new(state.store.clone()),
            observe::observe,
        ))
        .with_state(state.clone());

    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .nest(base_path, scim)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    ApiError(ScimError::not_found("no such endpoint")).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError(ScimError::new(
        405,
        None,
        "method not allowed on this endpoint",
    ))
    .into_response()
}

async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.store.ping_write().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}
