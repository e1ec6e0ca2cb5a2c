//! Bearer-token authentication for every SCIM route.
//!
//! A request that passes has the token's name noted in its task-local context for the
//! provisioning log: the observing middleware that writes the entry runs outside this layer
//! (so refused requests are logged too) and so never sees this layer's request extensions.
//!
//! Failed attempts are counted per client address ([`super::limits::AuthFailures`]). Once an
//! address is over `server.auth_failures_per_minute`, its requests get 429 before the token
//! is even read, good tokens included: the lockout is on the address, so a guesser learns
//! nothing from further attempts and each costs one map lookup. Behind a reverse proxy every
//! client shares the proxy's address; raise the limit (or set 0) there.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
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
    // Absent only when the router is served without connect info; then there is no address
    // to count against.
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(wait) = client.and_then(|ip| state.auth_failures.locked_out(ip)) {
        return super::limits::too_many_failures(wait);
    }
    // A missing header is not counted: it guesses nothing and costs no hashing or lookup.
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
        if let Some(ip) = client {
            state.auth_failures.record_failure(ip);
        }
        tracing::warn!(path = %req.uri().path(), "rejected a request with an unknown or revoked token");
        return ApiError(ScimError::unauthorized("invalid or revoked bearer token"))
            .into_response();
    };
    crate::provlog::note_actor(name);
    next.run(req).await
}
