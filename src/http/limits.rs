//! Request limits on the SCIM listener that are not about one body's content: failed-auth
//! lockout per client address, a cap on concurrent requests, and counting group member values
//! in a request. Every refusal is a SCIM error body (RFC 7644 §3.12).
//!
//! The body-size, filter and PATCH-operation limits live where those inputs are read
//! (`body.rs`, `resources.rs`, `scim::filter`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::error::ApiError;
use crate::scim::ScimError;

/// The window over which failed bearer-token attempts are counted
/// (`[server] auth_failures_per_minute`).
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Most client addresses tracked at once. An attacker spraying source addresses evicts the
/// oldest entries instead of growing memory; 10 000 entries are well under a megabyte.
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// One address's failures in its current window.
struct Entry {
    window_start: Instant,
    failures: u32,
}

struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// Addresses in the order their current window started (oldest first). A record whose
    /// instant no longer matches the entry is stale (the window restarted) and is skipped.
    /// Windows all have the same length, so the front is also the first to expire: cleaning
    /// and eviction pop from the front, which keeps both O(1) amortised.
    order: VecDeque<(IpAddr, Instant)>,
}

/// Failed-auth counters per client address: after `limit` failures within
/// [`AUTH_FAILURE_WINDOW`], the address is refused until its window ends.
///
/// One `HashMap` lookup under a `std` mutex held for a few instructions (never across an
/// await) is the whole cost on the hot path.
pub struct AuthFailures {
    limit: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<Table>,
}

impl AuthFailures {
    /// `limit` 0 turns the lockout off.
    pub fn new(limit: u32) -> AuthFailures {
        AuthFailures::with(limit, AUTH_FAILURE_WINDOW, MAX_TRACKED_ADDRESSES)
    }

    fn with(limit: u32, window: Duration, capacity: usize) -> AuthFailures {
        AuthFailures {
            limit,
            window,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock leaves counters, not invariants worth refusing
        // service over: carry on with the data as it is.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(retry_after)` when `ip` has used up its failures for the current window.
    pub fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let now = Instant::now();
        let table = self.lock();
        let entry = table.entries.get(&ip)?;
        let elapsed = now.saturating_duration_since(entry.window_start);
        (entry.failures >= self.limit && elapsed < self.window)
            .then(|| self.window.saturating_sub(elapsed))
    }

    /// Counts one failed attempt from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let now = Instant::now();
        let window = self.window;
        let mut table = self.lock();
        let Table { entries, order } = &mut *table;
        // Drop expired windows (and stale records) from the front.
        while let Some(&(front, started)) = order.front() {
            let current = entries.get(&front).map(|e| e.window_start) == Some(started);
            if current && now.saturating_duration_since(started) < window {
                break;
            }
            order.pop_front();
            if current {
                entries.remove(&front);
            }
        }
        if let Some(entry) = entries.get_mut(&ip) {
            entry.failures = entry.failures.saturating_add(1);
            return;
        }
        // Full: evict the address whose window started first.
        while entries.len() >= self.capacity {
            let Some((front, started)) = order.pop_front() else {
                break;
            };
            if entries.get(&front).map(|e| e.window_start) == Some(started) {
                entries.remove(&front);
            }
        }
        entries.insert(
            ip,
            Entry {
                window_start: now,
                failures: 1,
            },
        );
        order.push_back((ip, now));
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().entries.len()
    }
}

/// The 429 for a locked-out address, with `Retry-After` in whole seconds (rounded up).
pub fn too_many_failures(retry_after: Duration) -> Response {
    let secs = retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
        .max(1);
    let mut resp = ApiError(ScimError::new(
        429,
        None,
        format!("too many failed authentication attempts from this address; retry in {secs} s"),
    ))
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Sheds requests beyond `[server] max_concurrent_requests` with 503 rather than queueing
/// them: a queue would only hold sockets and memory while the IdP's client times out, and
/// IdPs retry a 503.
pub async fn concurrency_limit(
    State(permits): State<Arc<Semaphore>>,
    req: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = permits.try_acquire_owned() else {
        let mut resp = ApiError(ScimError::unavailable(
            "the server is handling too many requests; retry shortly",
        ))
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    // The permit is held until the handler has produced its response.
    next.run(req).await
}

/// Number of group member values a Group body (POST, PUT) carries: the length of its
/// `members` array (attribute names are case-insensitive).
pub fn members_in_resource(body: &Value) -> usize {
    body.as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("members")))
        .map_or(0, |(_, v)| values_in(v))
}

/// Number of member values a PatchOp body carries: values of operations whose path is
/// `members…`, and `members` inside path-less operations' values.
pub fn members_in_patch(body: &Value) -> usize {
    let Some(ops) = body
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Operations")))
        .and_then(|(_, v)| v.as_array())
    else {
        return 0;
    };
    ops.iter()
        .filter_map(Value::as_object)
        .map(|op| {
            let field = |name: &str| {
                op.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            };
            let value = field("value");
            match field("path").and_then(Value::as_str) {
                Some(path) => {
                    let p = path.trim();
                    let about_members = p
                        .get(..7)
                        .is_some_and(|head| head.eq_ignore_ascii_case("members"));
                    if about_members {
                        value.map_or(0, values_in)
                    } else {
                        0
                    }
                }
                None => value.map_or(0, members_in_resource),
            }
        })
        .fold(0usize, usize::saturating_add)
}

fn values_in(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.len(),
        Value::Null => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use serde_json::json;
    use tokio::sync::Notify;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn locks_out_after_the_limit_and_only_that_address() {
        let f = AuthFailures::new(3);
        for _ in 0..2 {
            f.record_failure(ip(1));
        }
        assert!(f.locked_out(ip(1)).is_none(), "below the limit");
        f.record_failure(ip(1));
        let wait = f.locked_out(ip(1)).expect("locked out at the limit");
        assert!(wait <= AUTH_FAILURE_WINDOW);
        assert!(f.locked_out(ip(2)).is_none(), "other addresses unaffected");
    }

    #[test]
    fn zero_turns_the_lockout_off() {
        let f = AuthFailures::new(0);
        for _ in 0..100 {
            f.record_failure(ip(1));
        }
        assert!(f.locked_out(ip(1)).is_none());
        assert_eq!(f.tracked(), 0);
    }

    #[test]
    fn an_expired_window_no_longer_locks_out() {
        let f = AuthFailures::with(1, Duration::ZERO, 10);
        f.record_failure(ip(1));
        assert!(f.locked_out(ip(1)).is_none());
        // The next failure starts a fresh window (and cleans the expired one).
        f.record_failure(ip(2));
        assert_eq!(f.tracked(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest() {
        let f = AuthFailures::with(1, Duration::from_secs(3600), 4);
        for n in 1..=10 {
            f.record_failure(ip(n));
        }
        assert_eq!(f.tracked(), 4);
        assert!(f.locked_out(ip(1)).is_none(), "oldest evicted");
        assert!(f.locked_out(ip(10)).is_some(), "newest kept");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many_failures(Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn member_values_are_counted_in_bodies_and_patches() {
        let members = json!([{"value": "a"}, {"value": "b"}]);
        assert_eq!(
            members_in_resource(&json!({"displayName": "g", "Members": members})),
            2
        );
        assert_eq!(members_in_resource(&json!({"displayName": "g"})), 0);
        let patch = json!({"Operations": [
            {"op": "add", "path": "members", "value": members},
            {"op": "remove", "path": "members[value eq \"a\"]"},
            {"op": "replace", "value": {"members": [{"value": "c"}], "displayName": "x"}},
            {"op": "replace", "path": "displayName", "value": "y"},
        ]});
        assert_eq!(members_in_patch(&patch), 3);
    }

    /// A router whose `/wait` handler holds its permit until `release` is notified.
    fn limited(permits: usize, release: Arc<Notify>, entered: Arc<Notify>) -> Router {
        Router::new()
            .route(
                "/wait",
                get(move || async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }),
            )
            .route("/quick", get(|| async { "quick" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(Semaphore::new(permits)),
                concurrency_limit,
            ))
    }

    #[tokio::test]
    async fn requests_beyond_the_cap_are_shed_with_503_and_retry_after() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = limited(1, release.clone(), entered.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");

        let held = tokio::spawn(client.get(format!("http://{addr}/wait")).send());
        // Deterministic: the handler has its permit once it signals.
        entered.notified().await;

        let shed = client
            .get(format!("http://{addr}/quick"))
            .send()
            .await
            .expect("request");
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let body: Value = shed.json().await.expect("json");
        assert_eq!(body["status"], "503");
        assert_eq!(
            body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );

        release.notify_one();
        let first = held.await.expect("joined").expect("request");
        assert_eq!(first.status(), StatusCode::OK);
        // The permit came back with the finished request.
        let after = client
            .get(format!("http://{addr}/quick"))
            .send()
            .await
            .expect("request");
        assert_eq!(after.status(), StatusCode::OK);
        server.abort();
    }
}
