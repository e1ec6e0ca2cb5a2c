//! Bearer-token authentication for every SCIM route.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::scim::ScimError;
use crate::store::{hash_token, TokenScope};

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
    let valid = configured
        || match state.store.tokens().contains(&hash, TokenScope::Scim) {
            Ok(found) => found,
            Err(e) => return ApiError::from(e).into_response(),
        };
    if !valid {
        tracing::warn!(path = %req.uri().path(), "rejected a request with an unknown or revoked token");
        return ApiError(ScimError::unauthorized("invalid or revoked bearer token"))
            .into_response();
    }
    next.run(req).await
}
