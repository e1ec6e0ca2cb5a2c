//! The observing middleware around every SCIM route: request ids, metrics and the inbound
//! provisioning-log entry.
//!
//! Owns: the `X-Request-Id` contract (a sane client id is kept, otherwise one is made, and
//! it is always echoed), the SCIM request metrics, and turning a finished request into a
//! log entry. It runs outermost, before auth, so rejected requests are counted and logged
//! too. It never buffers a successful response body: what the entry needs beyond method,
//! route, status and latency (the token's name, the resource id and userName) is noted in
//! the request's task-local context by auth and the store. Only an error's body (a small
//! SCIM error document of known length) is read, for its `detail`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::metrics::metrics;
use crate::provlog::{self, Direction, LogEntry, LogOutcome, Noted, RequestContext, REQUEST};
use crate::store::{now_ms, Store};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest error body read for the log's `detail`; SCIM errors are far smaller.
const ERROR_BODY_LIMIT: u64 = 16 * 1024;
/// Route label of requests that matched no route (so junk paths do not become series).
const UNMATCHED: &str = "unmatched";

/// A client's request id is kept when it is a plain token: 1 to 64 of `[A-Za-z0-9._-]`
/// (anything else could forge log lines or carry data).
fn sane_request_id(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(s)
}

fn new_request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The operation as the log shows it, relative to the SCIM base path (`PATCH /Users/{id}`).
/// Inside the nested SCIM router the request path has the base path stripped while the
/// route template keeps it, so the template's last segments, as many as the path has, are
/// the part below the base path.
fn operation_path(template: &str, path: &str) -> String {
    let depth = path.split('/').filter(|s| !s.is_empty()).count();
    let segments: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let tail = segments
        .get(segments.len().saturating_sub(depth)..)
        .unwrap_or(&[]);
    format!("/{}", tail.join("/"))
}

/// The resource type an operation path addresses, and the id when the route has one.
fn resource_of(op_path: &str, path: &str) -> (Option<&'static str>, Option<String>) {
    let kind = if op_path.starts_with("/Users") {
        Some("User")
    } else if op_path.starts_with("/Groups") {
        Some("Group")
    } else {
        None
    };
    let id = (kind.is_some() && op_path.ends_with("/{id}"))
        .then(|| path.rsplit('/').next())
        .flatten()
        .filter(|id| !id.is_empty())
        .map(|id| id.chars().take(128).collect());
    (kind, id)
}

/// The `detail` of a SCIM error response, read from a body of known, small length; the
/// response is rebuilt with the same bytes.
async fn error_detail(response: Response) -> (Response, Option<String>) {
    let small = HttpBody::size_hint(response.body())
        .exact()
        .is_some_and(|n| n <= ERROR_BODY_LIMIT);
    if !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return (Response::from_parts(parts, Body::empty()), None),
    };
    let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .map(|d| provlog::truncate_detail(&d));
    (Response::from_parts(parts, Body::from(bytes)), detail)
}

/// The middleware's state: the store whose recorder gets the entries. One `Arc`, because
/// axum clones a middleware's state for every request.
#[derive(Clone)]
pub struct Observe {
    store: Arc<Store>,
}

impl Observe {
    pub fn new(store: Store) -> Observe {
        Observe {
            store: Arc::new(store),
        }
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(Observe::new(store), observe)`.
pub async fn observe(State(state): State<Observe>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let at = now_ms();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .map_or_else(new_request_id, str::to_string);
    let method = req.method().clone();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        // The nested router's fallback matches as a catch-all: no route of ours.
        .filter(|t| !t.contains("{*"));
    let path = req.uri().path().to_string();

    let span = tracing::info_span!("scim_request", request_id = %request_id);
    let fut = REQUEST.scope(
        RequestContext::new(request_id.as_str()),
        next.run(req).instrument(span),
    );
    let mut fut = std::pin::pin!(fut);
    let mut response = (&mut fut).await;
    let noted = fut
        .as_mut()
        .take_value()
        .map(RequestContext::into_noted)
        .unwrap_or_default();
    let elapsed = started.elapsed();

    let status = response.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    metrics().observe_request(
        template.as_deref().unwrap_or(UNMATCHED),
        method.as_str(),
        status,
        elapsed,
    );
    // The log is of provisioning: changes, and every refused request. A successful read
    // changes nothing; logging each would put a row per GET (tens of thousands a second
    // under an IdP's lookups) on the writer.
    let read_ok = status < 400 && (method == Method::GET || method == Method::HEAD);
    if read_ok || !provlog::enabled(&state.store) {
        return response;
    }
    let (response, detail) = if status >= 400 {
        error_detail(response).await
    } else {
        (response, None)
    };
    let op_path = template
        .as_deref()
        .map_or_else(|| "(no route)".to_string(), |t| operation_path(t, &path));
    let (path_kind, path_id) = resource_of(&op_path, &path);
    let Noted {
        actor,
        resource_type,
        resource_id,
        user_name,
    } = noted;
    provlog::record(
        &state.store,
        LogEntry {
            id: None,
            at,
            direction: Direction::In,
            actor: actor.map(|a| a.to_string()),
            operation: format!("{method} {op_path}"),
            resource_type: resource_type.or(path_kind).map(str::to_string),
            resource_id: resource_id.or(path_id),
            user_name,
            status: Some(status),
            latency_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
            outcome: if status < 400 {
                LogOutcome::Ok
            } else {
                LogOutcome::Error
            },
            detail,
            request_id: Some(request_id),
            delivery_id: None,
        },
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let ok = HeaderValue::from_static("abc-123_x.Y");
        assert_eq!(sane_request_id(&ok), Some("abc-123_x.Y"));
        for bad in ["", "has space", "semi;colon", "new\u{7f}line"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert_eq!(sane_request_id(&v), None, "{bad:?}");
            }
        }
        let long = HeaderValue::from_str(&"a".repeat(65)).expect("header");
        assert_eq!(sane_request_id(&long), None);
        assert_eq!(new_request_id().len(), 32);
    }

    #[test]
    fn operations_are_relative_to_the_base_path() {
        assert_eq!(
            operation_path("/scim/v2/Users/{id}", "/Users/0192"),
            "/Users/{id}"
        );
        assert_eq!(operation_path("/scim/v2/Users", "/Users"), "/Users");
        assert_eq!(
            operation_path("/Groups/.search", "/Groups/.search"),
            "/Groups/.search"
        );
        assert_eq!(
            resource_of("/Users/{id}", "/Users/0192"),
            (Some("User"), Some("0192".to_string()))
        );
        assert_eq!(resource_of("/Groups", "/Groups"), (Some("Group"), None));
        assert_eq!(resource_of("/Schemas/{id}", "/Schemas/x"), (None, None));
    }
}
