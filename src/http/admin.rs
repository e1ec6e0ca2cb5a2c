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
use super::status_page::{self, ConnectorView, FailureView, LogView, StatusPage};
use crate::config::{ConnectorConfig, ConnectorKind};
use crate::connector::reconcile::{self, ReconcileError};
use crate::connector::Connector;
use crate::scim::ScimError;
use crate::store::{
    hash_token, now_ms, DeliveryFilter, LogEntry, LogQuery, Store, TokenScope, STATUSES,
};

/// Longest a `GET /events?wait=` long-poll waits.
const MAX_WAIT: Duration = Duration::from_secs(30);
const MAX_EVENTS: usize = 1000;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub connectors: Arc<Vec<ConnectorConfig>>,
    /// The connectors themselves, for reconciliation (which reads their targets).
    pub live: Arc<Vec<Connector>>,
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
        .route("/api/connectors/{name}/reconcile", post(reconcile))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{name}", delete(revoke_token))
        .route("/events", get(events))
        .route("/api/log", get(query_log))
        .route("/metrics", get(metrics))
        .route("/", get(page))
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

#[derive(Deserialize)]
struct ReconcileQuery {
    #[serde(default)]
    fix: bool,
}

/// Compares a SCIM target with what the connector says it should hold; `?fix=true` queues
/// the repairs.
async fn reconcile(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<ReconcileQuery>,
) -> ApiResult {
    let fail = |e: ReconcileError| {
        let status = match &e {
            ReconcileError::NoSuchConnector(_) => 404,
            ReconcileError::NotScim(_) => 400,
            ReconcileError::Paused(_) => 409,
            ReconcileError::Target(_) | ReconcileError::TooMany { .. } => 502,
            ReconcileError::Store(_) | ReconcileError::Desired { .. } => 503,
        };
        ApiError(ScimError::new(status, None, e.to_string()))
    };
    let connector = reconcile::find_scim(&state.live, &name).map_err(fail)?;
    let report = reconcile::reconcile(connector, &state.store, q.fix)
        .await
        .map_err(fail)?;
    json_ok(serde_json::to_value(report).unwrap_or_default())
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

#[derive(Deserialize)]
struct LogParams {
    /// A user id or userName.
    user: Option<String>,
    connector: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    outcome: Option<String>,
    limit: Option<usize>,
}

/// The provisioning log: who did what to whom, inbound and outbound, newest first.
async fn query_log(State(state): State<AdminState>, Query(p): Query<LogParams>) -> ApiResult {
    let rows = state
        .store
        .query_log(LogQuery {
            user: p.user,
            connector: p.connector,
            since: p.since,
            until: p.until,
            outcome: p.outcome,
            limit: p.limit.unwrap_or(100).min(1000),
        })
        .await?;
    json_ok(serde_json::to_value(rows).unwrap_or_default())
}

async fn metrics(State(state): State<AdminState>) -> ApiResult {
    let names = state.connectors.iter().map(|c| c.name.clone()).collect();
    let rows = state.store.connector_status(names).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::metrics().render(&rows),
    )
        .into_response())
}

fn ago(at: Option<i64>, now: i64) -> Option<String> {
    let secs = (now.saturating_sub(at?) / 1000).max(0);
    Some(match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    })
}

fn time_of(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn log_view(e: LogEntry) -> LogView {
    LogView {
        at: time_of(e.at),
        direction: e.direction.as_str().into(),
        actor: e.actor.unwrap_or_default(),
        operation: e.operation,
        resource: match (e.resource_type, e.resource_id) {
            (Some(t), Some(id)) => format!("{t}/{id}"),
            (_, Some(id)) => id,
            _ => String::new(),
        },
        user_name: e.user_name,
        status: e.status,
        outcome: e.outcome.as_str().into(),
        latency_ms: e.latency_ms,
        detail: e.detail,
    }
}

#[derive(Deserialize)]
struct PageQuery {
    q: Option<String>,
}

/// The status page: each connector's health and queue over the last hour, recent failures,
/// and a search over the provisioning log.
async fn page(State(state): State<AdminState>, Query(pq): Query<PageQuery>) -> ApiResult {
    let now = now_ms();
    let names: Vec<String> = state.connectors.iter().map(|c| c.name.clone()).collect();
    let rows = state.store.connector_status(names).await?;
    let mut connectors = Vec::new();
    for (row, c) in rows.into_iter().zip(state.connectors.iter()) {
        let switches = state.store.connector_switches(&row.connector).await?;
        let history = state
            .store
            .depth_history(&row.connector, 3_600_000, status_page::CHART_POINTS)
            .await?;
        let oldest_secs = row
            .oldest_pending_at
            .map(|at| now.saturating_sub(at) / 1000);
        let error_recent = match (row.last_error_at, row.last_success_at) {
            (Some(e), Some(ok)) => e > ok,
            (Some(_), None) => true,
            _ => false,
        };
        let paused = switches.paused || switches.deprovisions_paused;
        connectors.push(ConnectorView {
            name: row.connector.clone(),
            kind: kind_name(c.kind).into(),
            health: status_page::health(
                row.pending + row.in_flight,
                row.dead,
                oldest_secs,
                error_recent,
                paused,
            ),
            paused: switches.paused,
            deprovisions_paused: switches.deprovisions_paused,
            reason: switches.reason,
            pending: row.pending,
            in_flight: row.in_flight,
            done: row.done,
            dead: row.dead,
            oldest_pending: ago(row.oldest_pending_at, now),
            last_success: ago(row.last_success_at, now).map(|a| format!("{a} ago")),
            last_error: row.last_error,
            depth_history: history,
        });
    }
    let failures = state
        .store
        .query_log(LogQuery {
            outcome: Some("dead".into()),
            limit: 10,
            ..LogQuery::default()
        })
        .await?
        .into_iter()
        .chain(
            state
                .store
                .query_log(LogQuery {
                    outcome: Some("retry".into()),
                    limit: 10,
                    ..LogQuery::default()
                })
                .await?,
        )
        .map(|e| FailureView {
            at: time_of(e.at),
            connector: e.actor.unwrap_or_default(),
            resource: e.user_name.or(e.resource_id).unwrap_or_default(),
            status: e.status,
            error: e.detail.unwrap_or_default(),
        })
        .collect();
    let query = pq.q.filter(|q| !q.trim().is_empty());
    let results = match &query {
        Some(q) => state
            .store
            .query_log(LogQuery {
                user: Some(q.trim().to_string()),
                limit: 100,
                ..LogQuery::default()
            })
            .await?
            .into_iter()
            .map(log_view)
            .collect(),
        None => Vec::new(),
    };
    let html = status_page::render(&StatusPage {
        title: "scim-relay".into(),
        generated_at: time_of(now),
        connectors,
        failures,
        query,
        results,
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response())
}
