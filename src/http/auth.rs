//! Bearer-token authentication for every SCIM route.
//!
//! A request that passes has the token's name noted in its task-local context for the
//! provisioning log: the observing middleware that writes the entry runs outside this layer
//! (so refused requests are logged too) and so never sees this layer's request extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::scim::ScimError;
use crate::store::{hash_token, TokenScope};

/// The actor name of the token from `auth.token_env` / `auth.token_file`, which has no
/// stored name.
pub const CONFIGURED_TOKEN: &str = "configured-token";

/// The token from `Authorization: Bearer <token>` (scheme compared case-insensitively).
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return ApiError(ScimError::unauthorized(
            "missing bearer token: send Authorization: Bearer <token>",
        ))
        .into_response();
    };
    let hash = hash_token(token);
    let configured = state
        .configured_token
        .as_ref()
        .is_some_and(|h| bool::from(subtle::ConstantTimeEq::ct_eq(&h[..], &hash[..])));
    let name = if configured {
        Some(Arc::from(CONFIGURED_TOKEN))
    } else {
        match state.store.tokens().lookup(&hash, TokenScope::Scim) {
            Ok(found) => found,
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    let Some(name) = name else {
        tracing::warn!(path = %req.uri().path(), "rejected a request with an unknown or revoked token");
        return ApiError(ScimError::unauthorized("invalid or revoked bearer token"))
            .into_response();
    };
    crate::provlog::note_actor(name);
    next.run(req).await
}
