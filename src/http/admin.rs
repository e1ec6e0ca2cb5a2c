//! The admin listener: a JSON API over the same store functions the CLI uses (status,
//! deliveries, connector switches, resync, tokens), the pull-based event log, health
//! checks, `/metrics` and the status page. Its own tokens: a SCIM token opens nothing here,
//! nor an admin token the SCIM API. Browsers may send the admin token as the password of
//! HTTP Basic auth (any user name), so the status page needs no login form.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::config::{ConnectorConfig, ConnectorKind};
use crate::scim::ScimError;
use crate::store::{hash_token, DeliveryFilter, Store, TokenScope, STATUSES};

/// Longest a `GET /events?wait=` long-poll waits.
const MAX_WAIT: Duration = Duration::from_secs(30);
const MAX_EVENTS: usize = 1000;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub connectors: Arc<Vec<ConnectorConfig>>,
    /// Hash of the admin token from `admin.token_env` / `admin.token_file`, if configured.
    pub configured_token: Option<[u8; 32]>,
}

type ApiResult = Result<Response, ApiError>;

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/deliveries", get(list_deliveries))
        .route("/api/deliveries/{id}", get(show_delivery))
        .route("/api/deliveries/{id}/retry", post(retry_delivery))
        .route("/api/deliveries/{id}/discard", post(discard_delivery))
        .route("/api/connectors/{name}/retry-dead", post(retry_dead))
        .route("/api/connectors/{name}/resync", post(resync))
        .route("/api/connectors/{name}/pause", post(pause))
        .route("/api/connectors/{name}/resume", post(resume))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{name}", delete(revoke_token))
        .route("/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api)
        .fallback(|| async { ApiError(ScimError::not_found("no such endpoint")) })
}

/// The admin token from `Authorization: Bearer <token>` or `Basic base64(user:token)`.
fn presented_token(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

async fn require_admin(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let valid = match presented_token(&req) {
        Some(token) if !token.is_empty() => {
            let hash = hash_token(&token);
            let configured = state
                .configured_token
                .as_ref()
                .is_some_and(|h| bool::from(subtle::ConstantTimeEq::ct_eq(&h[..], &hash[..])));
            configured
                || match state.store.tokens().contains(&hash, TokenScope::Admin) {
                    Ok(found) => found,
                    Err(e) => return ApiError::from(e).into_response(),
                }
        }
        _ => false,
    };
    if !valid {
        let mut resp = ApiError(ScimError::unauthorized(
            "an admin token is required (scim-relay token create --admin --name NAME)",
        ))
        .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"scim-relay admin\", charset=\"UTF-8\""),
        );
        return resp;
    }
    next.run(req).await
}

fn connector<'a>(state: &'a AdminState, name: &str) -> Result<&'a ConnectorConfig, ApiError> {
    state
        .connectors
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ApiError(ScimError::not_found(format!("no connector named {name:?}"))))
}

fn json_ok(value: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(value)).into_response())
}

async fn status(State(state): State<AdminState>) -> ApiResult {
    let names = state.connectors.iter().map(|c| c.name.clone()).collect();
    let rows = state.store.connector_status(names).await?;
    let mut out = Vec::new();
    for (row, c) in rows.iter().zip(state.connectors.iter()) {
        let switches = state.store.connector_switches(&row.connector).await?;
        let mut v = serde_json::to_value(row).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("kind".into(), json!(kind_name(c.kind)));
            obj.insert(
                "switches".into(),
                serde_json::to_value(&switches).unwrap_or_default(),
            );
        }
        out.push(v);
    }
    json_ok(Value::Array(out))
}

pub fn kind_name(kind: ConnectorKind) -> &'static str {
    match kind {
        ConnectorKind::Webhook => "webhook",
        ConnectorKind::Scim => "scim",
    }
}

#[derive(Deserialize)]
struct DeliveryQuery {
    connector: Option<String>,
    status: Option<String>,
    resource: Option<String>,
    limit: Option<usize>,
}

async fn list_deliveries(
    State(state): State<AdminState>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult {
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError(ScimError::invalid_value(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            ))));
        }
    }
    let rows = state
        .store
        .list_deliveries(DeliveryFilter {
            connector: q.connector,
            status: q.status,
            resource: q.resource,
            limit: q.limit.unwrap_or(50).min(1000),
        })
        .await?;
    json_ok(serde_json::to_value(rows).unwrap_or_default())
}

async fn show_delivery(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let (info, payload) = state.store.show_delivery(&id).await?;
    let mut v = serde_json::to_value(info).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "payload".into(),
            serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        );
    }
    json_ok(v)
}

async fn retry_delivery(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let n = state.store.retry_deliveries(vec![id], None).await?;
    json_ok(json!({"queued": n}))
}

async fn discard_delivery(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let n = state.store.discard_deliveries(vec![id]).await?;
    json_ok(json!({"discarded": n}))
}

async fn retry_dead(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    connector(&state, &name)?;
    let n = state.store.retry_deliveries(Vec::new(), Some(name)).await?;
    json_ok(json!({"queued": n}))
}

async fn resync(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    let c = connector(&state, &name)?;
    if c.kind != ConnectorKind::Scim {
        return Err(ApiError(ScimError::invalid_value(
            "resync is for SCIM connectors; a webhook receives events as they happen",
        )));
    }
    let n = state.store.resync(&name, c.scim.groups).await?;
    json_ok(json!({"queued": n}))
}

async fn pause(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    connector(&state, &name)?;
    state.store.set_paused(&name, true).await?;
    json_ok(json!({"paused": true}))
}

async fn resume(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    connector(&state, &name)?;
    let n = state.store.resume_connector(&name).await?;
    json_ok(json!({"paused": false, "due_now": n}))
}

async fn list_tokens(State(state): State<AdminState>) -> ApiResult {
    let tokens = state.store.list_tokens().await?;
    json_ok(serde_json::to_value(tokens).unwrap_or_default())
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    #[serde(default)]
    admin: bool,
}

async fn create_token(State(state): State<AdminState>, body: axum::body::Bytes) -> ApiResult {
    let new: NewToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError(ScimError::invalid_syntax(format!(
            "expected {{\"name\": …}}: {e}"
        )))
    })?;
    let scope = if new.admin {
        TokenScope::Admin
    } else {
        TokenScope::Scim
    };
    let (info, token) = state.store.create_token(&new.name, scope).await?;
    let mut v = serde_json::to_value(info).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        // Shown this once; only its hash is stored.
        obj.insert("token".into(), Value::String(token));
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn revoke_token(State(state): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    let n = state.store.revoke_token(&name).await?;
    json_ok(json!({"revoked": n}))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
    /// Seconds to wait for an event when there is none yet (long-poll).
    wait: Option<u64>,
}

/// The ordered event log with a cursor: `next` is the `after` of the following call.
async fn events(State(state): State<AdminState>, Query(q): Query<EventsQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_EVENTS);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let found = loop {
        let found = state.store.events_after(q.after, limit).await?;
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let next = found.last().map_or(q.after, |e| e.seq);
    let events: Vec<Value> = found
        .into_iter()
        .map(|e| {
            let mut v: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("seq".into(), json!(e.seq));
            }
            v
        })
        .collect();
    json_ok(json!({"events": events, "next": next}))
}
